package routegate.harness;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

/**
 * The harness's independent Kafka client: Kafka's own {@code Admin}, {@code KafkaConsumer} and
 * {@code KafkaProducer}, never rskafka, so routegate's Kafka code is never verified by the
 * library it uses, and its consumer reads what Kafka's own producer wrote.
 *
 * <p>Usage: {@code KafkaTool serve <bootstrap>}. One JVM per test cluster takes one JSON request
 * per line on stdin, {@code {"id":1,"cmd":"describe-topic","args":{"name":"t"}}}, and answers one
 * line on stdout, {@code {"id":1,"ok":true,"result":...}} or {@code {"id":1,"ok":false,
 * "error":"..."}}. Requests run concurrently, so answers may come out of order. A long-lived
 * JVM saves a JVM start (about a second) per call. EOF on stdin (the test process is gone)
 * halts the JVM, so this process is its own watchdog.
 *
 * <p>The commands are implemented in {@link Commands}.
 */
public final class KafkaTool {
    static final ObjectMapper JSON = new ObjectMapper();

    private KafkaTool() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 2 || !args[0].equals("serve")) {
            System.err.println("usage: KafkaTool serve <bootstrap>");
            System.exit(2);
        }
        // Answers own stdout; anything a library prints goes to stderr instead.
        PrintStream answers = new PrintStream(
                new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
        System.setOut(System.err);

        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        props.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, "100");
        Admin admin = Admin.create(props);
        Commands commands = new Commands(admin, args[1]);
        ExecutorService pool = Executors.newCachedThreadPool(runnable -> {
            Thread thread = new Thread(runnable, "kafka-tool-request");
            thread.setDaemon(true);
            return thread;
        });

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) {
                continue;
            }
            JsonNode request = JSON.readTree(line);
            pool.execute(() -> answer(answers, request, commands));
        }
        Runtime.getRuntime().halt(0);
    }

    private static void answer(PrintStream answers, JsonNode request, Commands commands) {
        ObjectNode reply = JSON.createObjectNode();
        reply.set("id", request.get("id"));
        try {
            JsonNode args = request.path("args");
            reply.set("result", commands.run(request.path("cmd").asText(), args));
            reply.put("ok", true);
        } catch (Throwable e) {
            Throwable cause = e;
            while (cause instanceof ExecutionException && cause.getCause() != null) {
                cause = cause.getCause();
            }
            reply.put("ok", false);
            reply.put("error", cause.getClass().getName() + ": " + cause.getMessage());
        }
        String text;
        try {
            text = JSON.writeValueAsString(reply);
        } catch (Exception e) {
            text = "{\"id\":" + request.get("id") + ",\"ok\":false,\"error\":\"cannot encode the answer\"}";
        }
        synchronized (answers) {
            answers.println(text);
            answers.flush();
        }
    }

    static ArrayNode array() {
        return JSON.createArrayNode();
    }
}
