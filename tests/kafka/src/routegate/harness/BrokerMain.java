package routegate.harness;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Formats a node's storage (if not yet formatted) and then runs the broker, in one JVM.
 *
 * <p>Usage: {@code BrokerMain <server.properties> <cluster id> [extra StorageTool format args]}.
 *
 * <p>Why one JVM: a separate {@code kafka.tools.StorageTool format} costs a JVM start (about a
 * second on two cores) per node. Formatting runs with {@code --ignore-formatted}, so a restart
 * of the node with the same command line keeps its data.
 */
public final class BrokerMain {
    private BrokerMain() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: BrokerMain <server.properties> <cluster id> [format args]");
            System.exit(2);
        }
        List<String> format = new ArrayList<>(
                List.of("format", "--ignore-formatted", "-c", args[0], "-t", args[1]));
        format.addAll(Arrays.asList(args).subList(2, args.length));
        int code = kafka.tools.StorageTool.execute(format.toArray(new String[0]), System.out);
        if (code != 0) {
            System.err.println("routegate harness: formatting the storage failed with exit code " + code);
            Runtime.getRuntime().halt(code);
        }
        kafka.Kafka.main(new String[] {args[0]});
    }
}
