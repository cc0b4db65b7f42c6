package routegate.peer.graphhopper;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.graphhopper.GHRequest;
import com.graphhopper.GHResponse;
import com.graphhopper.GraphHopper;
import com.graphhopper.ResponsePath;
import com.graphhopper.config.CHProfile;
import com.graphhopper.config.Profile;
import com.graphhopper.routing.Path;
import com.graphhopper.routing.ch.CHRoutingAlgorithmFactory;
import com.graphhopper.routing.ev.Subnetwork;
import com.graphhopper.routing.querygraph.QueryGraph;
import com.graphhopper.routing.util.DefaultSnapFilter;
import com.graphhopper.routing.util.EdgeFilter;
import com.graphhopper.storage.BaseGraph;
import com.graphhopper.storage.RoutingCHGraph;
import com.graphhopper.storage.index.LocationIndex;
import com.graphhopper.storage.index.Snap;
import com.graphhopper.util.Constants;
import com.graphhopper.util.CustomModel;
import com.graphhopper.util.GHUtility;
import com.graphhopper.util.PMap;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * GraphHopper peer benchmark for routegate's road router.
 *
 * <pre>
 * java -Xmx4g -jar graphhopper-peer.jar --osm FILE.osm.pbf --cache DIR --pairs PAIRS.txt \
 *      --matrix100 POINTS100.txt --matrix1000 POINTS1000.txt --out OUT.json
 * </pre>
 *
 * See README.md for the meaning of every output field.
 */
public final class Main {

    static final String PROFILE = "car";
    /** Encoded values required by GraphHopper's bundled car.json custom model. */
    static final String ENCODED_VALUES = "car_access, car_average_speed";

    private Main() {
    }

    // ------------------------------------------------------------------ args

    static final class Args {
        String osm, cache, pairs, matrix100, matrix1000, out, matrix100Out;
        boolean verify = true;

        static Args parse(String[] argv) {
            Args a = new Args();
            for (int i = 0; i < argv.length; i++) {
                String k = argv[i];
                if (k.equals("--no-verify")) {
                    a.verify = false;
                    continue;
                }
                if (k.equals("-h") || k.equals("--help")) {
                    usage(null);
                }
                if (i + 1 >= argv.length) usage("missing value for " + k);
                String v = argv[++i];
                switch (k) {
                    case "--osm": a.osm = v; break;
                    case "--cache": a.cache = v; break;
                    case "--pairs": a.pairs = v; break;
                    case "--matrix100": a.matrix100 = v; break;
                    case "--matrix1000": a.matrix1000 = v; break;
                    case "--out": a.out = v; break;
                    case "--matrix100-out": a.matrix100Out = v; break;
                    default: usage("unknown argument " + k);
                }
            }
            if (a.osm == null || a.cache == null || a.out == null)
                usage("--osm, --cache and --out are required");
            return a;
        }

        static void usage(String err) {
            if (err != null) System.err.println("error: " + err);
            System.err.println("usage: java -Xmx4g -jar graphhopper-peer.jar --osm FILE.osm.pbf --cache DIR"
                    + " --pairs PAIRS.txt --matrix100 POINTS100.txt --matrix1000 POINTS1000.txt --out OUT.json"
                    + " [--matrix100-out M100.json] [--no-verify]");
            System.exit(err == null ? 0 : 2);
        }
    }

    // ------------------------------------------------------------------ setup

    static GraphHopper newHopper(String osm, String cache) {
        GraphHopper hopper = new GraphHopper();
        hopper.setOSMFile(osm);
        hopper.setGraphHopperLocation(cache);
        hopper.setEncodedValuesString(ENCODED_VALUES);
        CustomModel car = GHUtility.loadCustomModelFromJar("car.json");
        // no TurnCostsConfig -> node-based, turn costs off
        hopper.setProfiles(new Profile(PROFILE).setCustomModel(car));
        hopper.getCHPreparationHandler().setCHProfiles(new CHProfile(PROFILE));
        return hopper;
    }

    /** Deletes a GraphHopper graph folder. Refuses folders that contain sub-directories. */
    static void deleteGraphFolder(String dir) throws IOException {
        java.nio.file.Path p = Paths.get(dir);
        if (!Files.exists(p)) return;
        if (!Files.isDirectory(p)) throw new IOException("--cache " + dir + " exists and is not a directory");
        try (Stream<java.nio.file.Path> s = Files.list(p)) {
            if (s.anyMatch(Files::isDirectory))
                throw new IOException("--cache " + dir + " contains sub-directories; refusing to delete it"
                        + " (a GraphHopper graph folder is flat)");
        }
        try (Stream<java.nio.file.Path> s = Files.walk(p)) {
            for (java.nio.file.Path f : (Iterable<java.nio.file.Path>) s.sorted(Comparator.reverseOrder())::iterator)
                Files.delete(f);
        }
    }

    static List<double[]> readCoords(String file, int expected) throws IOException {
        List<double[]> out = new ArrayList<>();
        int lineNo = 0;
        for (String line : Files.readAllLines(Paths.get(file), StandardCharsets.UTF_8)) {
            lineNo++;
            String t = line.trim();
            if (t.isEmpty() || t.startsWith("#")) continue;
            String[] parts = t.split("[\\s,;]+");
            if (parts.length != expected)
                throw new IOException(file + ":" + lineNo + ": expected " + expected + " numbers, got '" + t + "'");
            double[] v = new double[expected];
            for (int i = 0; i < expected; i++) v[i] = Double.parseDouble(parts[i]);
            out.add(v);
        }
        return out;
    }

    static double ms(long nanos) {
        return round(nanos / 1e6, 3);
    }

    static double round(double v, int digits) {
        double f = Math.pow(10, digits);
        return Math.round(v * f) / f;
    }

    static long readProcStatusKb(String key) {
        try {
            for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
                if (line.startsWith(key + ":")) {
                    String[] parts = line.substring(key.length() + 1).trim().split("\\s+");
                    return Long.parseLong(parts[0]);
                }
            }
        } catch (IOException | RuntimeException e) {
            // not on Linux
        }
        return -1;
    }

    static double heapUsedMb() throws InterruptedException {
        Runtime rt = Runtime.getRuntime();
        for (int i = 0; i < 3; i++) {
            System.gc();
            Thread.sleep(100);
        }
        return round((rt.totalMemory() - rt.freeMemory()) / (1024.0 * 1024.0), 1);
    }

    // ------------------------------------------------------------------ routing

    /** Low-level CH routing on a loaded GraphHopper instance. */
    static final class Router {
        final GraphHopper hopper;
        final BaseGraph baseGraph;
        final RoutingCHGraph chGraph;
        final LocationIndex index;
        final EdgeFilter snapFilter;
        final PMap algoOpts = new PMap();

        Router(GraphHopper hopper) {
            this.hopper = hopper;
            this.baseGraph = hopper.getBaseGraph();
            this.chGraph = hopper.getCHGraphs().get(PROFILE);
            if (chGraph == null) throw new IllegalStateException("no CH graph for profile " + PROFILE);
            this.index = hopper.getLocationIndex();
            // same snap filter GraphHopper's Router uses: accessible for the profile and not in a
            // removed subnetwork
            this.snapFilter = new DefaultSnapFilter(chGraph.getWeighting(),
                    hopper.getEncodingManager().getBooleanEncodedValue(Subnetwork.key(PROFILE)));
        }

        /** Fresh snap (QueryGraph.create mutates snaps, so a snap must not be reused across query graphs). */
        Snap snap(double lat, double lon) {
            return index.findClosest(lat, lon, snapFilter);
        }

        /** One-to-one CH query between two valid snaps; returns null if no route. */
        Path route(Snap from, Snap to) {
            QueryGraph qg = QueryGraph.create(baseGraph, from, to);
            Path p = new CHRoutingAlgorithmFactory(chGraph, qg).createAlgo(algoOpts)
                    .calcPath(from.getClosestNode(), to.getClosestNode());
            return p.isFound() ? p : null;
        }
    }

    static final class PairsResult {
        Path[] paths;
        int snapFailed;
        long snapNanos;
        long queryNanos;
        int queried;
    }

    static PairsResult runPairs(Router r, List<double[]> pairs) {
        PairsResult res = new PairsResult();
        int n = pairs.size();
        Snap[] from = new Snap[n], to = new Snap[n];
        long t0 = System.nanoTime();
        for (int i = 0; i < n; i++) {
            double[] p = pairs.get(i);
            from[i] = r.snap(p[0], p[1]);
            to[i] = r.snap(p[2], p[3]);
        }
        long t1 = System.nanoTime();
        res.paths = new Path[n];
        for (int i = 0; i < n; i++) {
            if (!from[i].isValid() || !to[i].isValid()) {
                res.snapFailed++;
                continue;
            }
            res.paths[i] = r.route(from[i], to[i]);
            res.queried++;
        }
        long t2 = System.nanoTime();
        res.snapNanos = t1 - t0;
        res.queryNanos = t2 - t1;
        return res;
    }

    static final class MatrixResult {
        int n;
        int unsnapped;
        long unreachable;
        long queries;
        long snapNanos;
        long queryNanos;
        /** row-major travel times in ms, -1 = no route / unsnapped */
        long[] timesMs;
    }

    /**
     * Full n x n time matrix as n^2 one-to-one CH queries. Every point is snapped once and all snaps are
     * put into a single QueryGraph.
     */
    static MatrixResult runMatrix(Router r, List<double[]> pts) {
        MatrixResult res = new MatrixResult();
        int n = pts.size();
        res.n = n;
        long t0 = System.nanoTime();
        Snap[] snaps = new Snap[n];
        List<Snap> valid = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            snaps[i] = r.snap(pts.get(i)[0], pts.get(i)[1]);
            if (snaps[i].isValid()) valid.add(snaps[i]);
            else res.unsnapped++;
        }
        QueryGraph qg = QueryGraph.create(r.baseGraph, valid);
        int[] node = new int[n];
        for (int i = 0; i < n; i++) node[i] = snaps[i].isValid() ? snaps[i].getClosestNode() : -1;
        CHRoutingAlgorithmFactory factory = new CHRoutingAlgorithmFactory(r.chGraph, qg);
        long t1 = System.nanoTime();
        long[] times = new long[n * n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                if (node[i] < 0 || node[j] < 0) {
                    times[i * n + j] = -1;
                    continue;
                }
                Path p = factory.createAlgo(r.algoOpts).calcPath(node[i], node[j]);
                res.queries++;
                if (p.isFound()) {
                    times[i * n + j] = p.getTime();
                } else {
                    times[i * n + j] = -1;
                    res.unreachable++;
                }
            }
        }
        long t2 = System.nanoTime();
        res.snapNanos = t1 - t0;
        res.queryNanos = t2 - t1;
        res.timesMs = times;
        return res;
    }

    // ------------------------------------------------------------------ main

    public static void main(String[] argv) throws Exception {
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null)
            System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        Args args = Args.parse(argv);

        List<double[]> pairs = args.pairs == null ? List.of() : readCoords(args.pairs, 4);
        List<double[]> pts100 = args.matrix100 == null ? null : readCoords(args.matrix100, 2);
        List<double[]> pts1000 = args.matrix1000 == null ? null : readCoords(args.matrix1000, 2);

        // 1. import + CH preparation
        deleteGraphFolder(args.cache);
        long t0 = System.nanoTime();
        GraphHopper importer = newHopper(args.osm, args.cache);
        importer.importOrLoad();
        long prepareNanos = System.nanoTime() - t0;
        importer.close();
        importer = null;

        // 2. load the prepared graph into a fresh instance
        t0 = System.nanoTime();
        GraphHopper hopper = newHopper(args.osm, args.cache);
        if (!hopper.load())
            throw new IllegalStateException("could not load graph from " + args.cache);
        long loadNanos = System.nanoTime() - t0;
        double heapMb = heapUsedMb();

        Router router = new Router(hopper);

        // 3. JIT warm-up: one untimed run of the 100 matrix (or the first 100 points of the 1000 set)
        if (pts100 != null) runMatrix(router, pts100);
        else if (pts1000 != null) runMatrix(router, pts1000.subList(0, Math.min(100, pts1000.size())));

        // 4. one-to-one pairs: warm-up pass over the same pairs, then the timed pass
        PairsResult pr = null;
        if (!pairs.isEmpty()) {
            runPairs(router, pairs);
            pr = runPairs(router, pairs);
        }

        // 5. timed matrices
        MatrixResult m100 = pts100 == null ? null : runMatrix(router, pts100);
        MatrixResult m1000 = pts1000 == null ? null : runMatrix(router, pts1000);

        // 6. cross-check the low-level results against GraphHopper's public route() API
        int verifyMismatches = 0;
        double verifyMaxDiffM = 0, verifyMaxDiffS = 0;
        if (args.verify && pr != null) {
            for (int i = 0; i < pairs.size(); i++) {
                double[] p = pairs.get(i);
                GHResponse rsp = hopper.route(new GHRequest(p[0], p[1], p[2], p[3]).setProfile(PROFILE));
                Path mine = pr.paths[i];
                if (rsp.hasErrors()) {
                    if (mine != null) verifyMismatches++;
                    continue;
                }
                if (mine == null) {
                    verifyMismatches++;
                    continue;
                }
                ResponsePath best = rsp.getBest();
                double dm = Math.abs(best.getDistance() - mine.getDistance());
                double ds = Math.abs(best.getTime() - mine.getTime()) / 1000.0;
                verifyMaxDiffM = Math.max(verifyMaxDiffM, dm);
                verifyMaxDiffS = Math.max(verifyMaxDiffS, ds);
                if (dm > 1.0 || ds > 1.0) verifyMismatches++;
            }
        }

        // 7. report
        JsonNodeFactory f = JsonNodeFactory.instance;
        ObjectNode o = f.objectNode();
        o.put("version", Constants.VERSION);
        o.put("profile", PROFILE);
        o.put("encoded_values", ENCODED_VALUES);
        o.put("prepare_ms", ms(prepareNanos));
        o.put("load_ms", ms(loadNanos));
        o.put("heap_used_mb", heapMb);
        o.put("rss_mb", 0.0); // filled in last
        o.put("rss_peak_mb", 0.0);
        if (pr != null) {
            o.put("one_to_one_us", round(pr.queryNanos / 1e3 / Math.max(1, pr.queried), 2));
            o.put("one_to_one_total_us", round((pr.queryNanos + pr.snapNanos) / 1e3 / Math.max(1, pairs.size()), 2));
            o.put("pairs_count", pairs.size());
            o.put("pairs_unsnapped", pr.snapFailed);
        } else {
            o.putNull("one_to_one_us");
            o.putNull("one_to_one_total_us");
        }
        putMatrix(o, "matrix_100", m100);
        putMatrix(o, "matrix_1000", m1000);
        o.put("matrix_unsnapped", (m100 == null ? 0 : m100.unsnapped) + (m1000 == null ? 0 : m1000.unsnapped));
        o.put("nodes", router.baseGraph.getNodes());
        o.put("edges", router.baseGraph.getEdges());
        o.put("shortcuts", router.chGraph.getShortcuts());
        if (args.verify && pr != null) {
            o.put("verify_mismatches", verifyMismatches);
            o.put("verify_max_diff_m", round(verifyMaxDiffM, 3));
            o.put("verify_max_diff_s", round(verifyMaxDiffS, 3));
        }
        ArrayNode arr = o.putArray("pairs");
        if (pr != null) {
            for (Path p : pr.paths) {
                if (p == null) {
                    arr.addNull();
                } else {
                    ObjectNode e = arr.addObject();
                    e.put("distance_m", round(p.getDistance(), 3));
                    e.put("time_s", round(p.getTime() / 1000.0, 3));
                }
            }
        }

        ObjectMapper om = new ObjectMapper();
        if (args.matrix100Out != null && m100 != null) {
            ArrayNode rows = f.arrayNode();
            for (int i = 0; i < m100.n; i++) {
                ArrayNode row = rows.addArray();
                for (int j = 0; j < m100.n; j++) {
                    long t = m100.timesMs[i * m100.n + j];
                    if (t < 0) row.addNull();
                    else row.add(round(t / 1000.0, 3));
                }
            }
            om.writeValue(Paths.get(args.matrix100Out).toFile(), rows);
        }

        long rssKb = readProcStatusKb("VmRSS");
        long hwmKb = readProcStatusKb("VmHWM");
        o.put("rss_mb", rssKb < 0 ? -1 : round(rssKb / 1024.0, 1));
        o.put("rss_peak_mb", hwmKb < 0 ? -1 : round(hwmKb / 1024.0, 1));

        om.enable(SerializationFeature.INDENT_OUTPUT);
        java.nio.file.Path outPath = Paths.get(args.out);
        if (outPath.getParent() != null) Files.createDirectories(outPath.getParent());
        om.writeValue(outPath.toFile(), o);

        // summary on stdout (everything except the per-pair list)
        ObjectNode summary = o.deepCopy();
        summary.remove("pairs");
        System.out.println(om.writeValueAsString(summary));

        hopper.close();
    }

    static void putMatrix(ObjectNode o, String prefix, MatrixResult m) {
        if (m == null) {
            o.putNull(prefix + "_ms");
            o.putNull(prefix + "_total_ms");
            return;
        }
        o.put(prefix + "_ms", ms(m.queryNanos));
        o.put(prefix + "_total_ms", ms(m.queryNanos + m.snapNanos));
        o.put(prefix + "_points", m.n);
        o.put(prefix + "_unsnapped", m.unsnapped);
        o.put(prefix + "_queries", m.queries);
        o.put(prefix + "_unreachable", m.unreachable);
    }
}
