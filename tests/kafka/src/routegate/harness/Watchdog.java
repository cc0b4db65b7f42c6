package routegate.harness;

import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.util.Arrays;

/**
 * Launcher for every long-lived JVM the Rust test harness starts.
 *
 * <p>Usage: {@code Watchdog <main class> <args...>}. A daemon thread reads stdin until EOF and
 * then halts the JVM; afterwards the real main class runs with the remaining arguments.
 *
 * <p>Why: the test process holds the write end of this JVM's stdin pipe and never writes to it.
 * When the test process ends for any reason (normal exit, panic, timeout, SIGKILL), the kernel
 * closes that end, the read returns EOF, and this JVM halts. Statics in a Rust test binary are
 * never dropped, so this is what stops the shared broker; it also covers SIGKILL, which no Rust
 * code can react to.
 */
public final class Watchdog {
    private Watchdog() {}

    public static void main(String[] args) throws Throwable {
        if (args.length < 1) {
            System.err.println("usage: Watchdog <main class> <args...>");
            System.exit(2);
        }
        Thread watchdog = new Thread(Watchdog::haltOnEof, "routegate-harness-watchdog");
        watchdog.setDaemon(true);
        watchdog.start();

        Method main = Class.forName(args[0]).getMethod("main", String[].class);
        try {
            main.invoke(null, (Object) Arrays.copyOfRange(args, 1, args.length));
        } catch (InvocationTargetException e) {
            throw e.getCause();
        }
    }

    /** Blocks until the parent closes our stdin (it dies), then halts without shutdown hooks. */
    static void haltOnEof() {
        byte[] buffer = new byte[256];
        try {
            InputStream in = System.in;
            while (in.read(buffer) >= 0) {
                // The harness never writes; anything read is ignored.
            }
        } catch (IOException e) {
            // A broken pipe means the same as EOF: the parent is gone.
        }
        Runtime.getRuntime().halt(1);
    }
}
