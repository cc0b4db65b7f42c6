package routegate.harness;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TopicListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.ElectionNotNeededException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/** The commands of {@link KafkaTool}; each takes its JSON arguments and returns a JSON result. */
final class Commands {
    private static final Base64.Encoder B64 = Base64.getEncoder();
    private static final Base64.Decoder B64_DECODE = Base64.getDecoder();
    private final Admin admin;
    private final String bootstrap;
    /** Kafka's own producer for {@code producer-partitions}, made on first use. */
    private KafkaProducer<byte[], byte[]> producer;

    Commands(Admin admin, String bootstrap) {
        this.admin = admin;
        this.bootstrap = bootstrap;
    }

    JsonNode run(String cmd, JsonNode args) throws Exception {
        switch (cmd) {
            case "ping": return KafkaTool.JSON.getNodeFactory().textNode("pong");
            case "describe-cluster": return describeCluster();
            case "create-topic": return createTopic(args);
            case "delete-topic": return deleteTopic(args.path("name").asText());
            case "describe-topic": return describeTopic(args.path("name").asText());
            case "list-topics": return listTopics();
            case "read-topic": return readTopic(args.path("name").asText(), args.path("timeout_ms").asLong(30000));
            case "reassign": return reassign(args);
            case "elect-preferred": return electPreferred(args);
            case "leader-epoch": return leaderEpoch(args);
            case "broker-config": return brokerConfig(args);
            case "producer-partitions": return producerPartitions(args);
            case "produce-records": return produceRecords(args);
            case "add-acls": return acls(args, true);
            case "remove-acls": return acls(args, false);
            default: throw new IllegalArgumentException("unknown command " + cmd);
        }
    }

    private JsonNode describeCluster() throws Exception {
        DescribeClusterResult cluster = admin.describeCluster();
        ObjectNode out = KafkaTool.JSON.createObjectNode();
        ArrayNode nodes = out.putArray("nodes");
        for (Node node : cluster.nodes().get()) {
            nodes.add(node.id());
        }
        Node controller = cluster.controller().get();
        out.put("controller", controller == null ? -1 : controller.id());
        return out;
    }

    /** Creates the topic and waits until every partition has a leader. */
    private JsonNode createTopic(JsonNode args) throws Exception {
        String name = args.path("name").asText();
        NewTopic topic;
        if (args.hasNonNull("assignment")) {
            Map<Integer, List<Integer>> assignment = new HashMap<>();
            int partition = 0;
            for (JsonNode replicas : args.get("assignment")) {
                assignment.put(partition++, ints(replicas));
            }
            topic = new NewTopic(name, assignment);
        } else {
            topic = new NewTopic(name, args.path("partitions").asInt(1), (short) args.path("rf").asInt(1));
        }
        Map<String, String> configs = new HashMap<>();
        args.path("configs").properties().forEach(e -> configs.put(e.getKey(), e.getValue().asText()));
        topic.configs(configs);
        admin.createTopics(List.of(topic)).all().get();
        return waitForLeaders(name, System.nanoTime() + Duration.ofSeconds(30).toNanos());
    }

    private JsonNode waitForLeaders(String name, long deadline) throws Exception {
        while (true) {
            try {
                JsonNode description = describeTopic(name);
                boolean allLed = true;
                for (JsonNode partition : description.get("partitions")) {
                    allLed &= !partition.get("leader").isNull();
                }
                if (allLed) {
                    return description;
                }
            } catch (Exception e) {
                if (System.nanoTime() > deadline) {
                    throw e;
                }
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("topic " + name + " has partitions without a leader after 30 s");
            }
            Thread.sleep(50);
        }
    }

    private JsonNode deleteTopic(String name) throws Exception {
        admin.deleteTopics(List.of(name)).all().get();
        return KafkaTool.JSON.nullNode();
    }

    private JsonNode describeTopic(String name) throws Exception {
        TopicDescription description = admin.describeTopics(List.of(name)).allTopicNames().get().get(name);
        ObjectNode out = KafkaTool.JSON.createObjectNode();
        out.put("name", name);
        ArrayNode partitions = out.putArray("partitions");
        for (TopicPartitionInfo info : description.partitions()) {
            ObjectNode p = partitions.addObject();
            p.put("partition", info.partition());
            if (info.leader() == null || info.leader().isEmpty()) {
                p.putNull("leader");
            } else {
                p.put("leader", info.leader().id());
            }
            ArrayNode replicas = p.putArray("replicas");
            info.replicas().forEach(n -> replicas.add(n.id()));
            ArrayNode isr = p.putArray("isr");
            info.isr().forEach(n -> isr.add(n.id()));
        }
        return out;
    }

    private JsonNode listTopics() throws Exception {
        ArrayNode out = KafkaTool.array();
        for (TopicListing listing : admin.listTopics().listings().get()) {
            out.add(listing.name());
        }
        return out;
    }

    /** Sets a partition's replica list (its first entry is the preferred leader) and waits until done. */
    private JsonNode reassign(JsonNode args) throws Exception {
        TopicPartition tp = new TopicPartition(args.path("name").asText(), args.path("partition").asInt());
        NewPartitionReassignment target = new NewPartitionReassignment(ints(args.get("replicas")));
        admin.alterPartitionReassignments(Map.of(tp, Optional.of(target))).all().get();
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (!admin.listPartitionReassignments(Set.of(tp)).reassignments().get().isEmpty()) {
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("reassignment of " + tp + " still running after 30 s");
            }
            Thread.sleep(50);
        }
        return KafkaTool.JSON.nullNode();
    }

    private JsonNode electPreferred(JsonNode args) throws Exception {
        TopicPartition tp = new TopicPartition(args.path("name").asText(), args.path("partition").asInt());
        Map<TopicPartition, Optional<Throwable>> result =
                admin.electLeaders(ElectionType.PREFERRED, Set.of(tp)).partitions().get();
        Optional<Throwable> error = result.getOrDefault(tp, Optional.empty());
        if (error.isPresent() && !(error.get() instanceof ElectionNotNeededException)) {
            throw new IllegalStateException("preferred election of " + tp + " failed", error.get());
        }
        return KafkaTool.JSON.nullNode();
    }

    /** A broker's effective value of one configuration key (DescribeConfigs), or null. */
    private JsonNode brokerConfig(JsonNode args) throws Exception {
        ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, args.path("node").asText());
        Config config = admin.describeConfigs(List.of(broker)).all().get().get(broker);
        ConfigEntry entry = config.get(args.path("name").asText());
        if (entry == null || entry.value() == null) {
            return KafkaTool.JSON.nullNode();
        }
        return KafkaTool.JSON.getNodeFactory().textNode(entry.value());
    }

    /**
     * The partition's current leader epoch as its leader reports it: ListOffsets(LATEST) answers
     * the latest epoch of the leader's epoch cache, which a new leader sets when it takes over,
     * before it appends anything. Records appended from then on carry this epoch or a later one.
     */
    private JsonNode leaderEpoch(JsonNode args) throws Exception {
        TopicPartition tp = new TopicPartition(args.path("name").asText(), args.path("partition").asInt());
        Optional<Integer> epoch =
                admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get().leaderEpoch();
        if (epoch.isEmpty()) {
            throw new IllegalStateException("the leader of " + tp + " reported no leader epoch");
        }
        return KafkaTool.JSON.getNodeFactory().numberNode(epoch.get());
    }

    /**
     * The partition Kafka's own producer (default partitioner, default settings for keyed
     * records) chooses for each key (base64) when the topic has {@code partitions} partitions.
     * Not computed here: each key is really sent, with an empty value, to the scratch topic
     * {@code routegate-java-partitioner-<partitions>}, and the answer is where the broker stored it.
     */
    private JsonNode producerPartitions(JsonNode args) throws Exception {
        int partitions = args.path("partitions").asInt();
        String topic = "routegate-java-partitioner-" + partitions;
        try {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) {
                throw e;
            }
        }
        waitForLeaders(topic, System.nanoTime() + Duration.ofSeconds(30).toNanos());
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        for (JsonNode key : args.get("keys")) {
            byte[] bytes = B64_DECODE.decode(key.asText());
            sent.add(producer().send(new ProducerRecord<>(topic, bytes, new byte[0])));
        }
        ArrayNode out = KafkaTool.array();
        for (Future<RecordMetadata> metadata : sent) {
            out.add(metadata.get(60, TimeUnit.SECONDS).partition());
        }
        return out;
    }

    /**
     * Sends {@code records} to topic {@code name} with Kafka's own producer, in the given order,
     * and answers where each landed, {@code [{"partition":p,"offset":o},...]} in input order.
     *
     * <p>Each record is {@code {"partition":int (absent or null: the producer's default
     * partitioner, by key), "key":string or null, "value":string (UTF-8) or "value_b64":base64,
     * "headers":{"name":"value",...} or [["name","value"],...]}}; header names and values are
     * UTF-8, and the array form keeps order and duplicate names, which a JSON object cannot.
     * Every record is parsed before the first is sent, so a malformed one sends nothing.
     *
     * <p>A fresh producer per call, so no state (an epoch bump, a fatal error) carries over from
     * one call to the next: acks=all and idempotence, whose at most 5 in-flight requests per
     * connection keep each partition in send order. All records are sent asynchronously, then
     * every future is awaited; the first failure fails the call, naming the record. An explicit
     * partition the topic does not have fails the call before anything is sent. acks=all
     * needs the partition's ISR to reach min.insync.replicas (2 on clusters of 3+ nodes).
     */
    private JsonNode produceRecords(JsonNode args) throws Exception {
        String topic = args.path("name").asText();
        if (topic.isEmpty()) {
            throw new IllegalArgumentException("produce-records needs a topic \"name\"");
        }
        JsonNode records = args.path("records");
        if (!records.isArray()) {
            throw new IllegalArgumentException("produce-records needs a \"records\" array");
        }
        List<ProducerRecord<byte[], byte[]>> toSend = new ArrayList<>(records.size());
        for (int i = 0; i < records.size(); i++) {
            try {
                toSend.add(producerRecord(topic, records.get(i)));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("produce-records: record " + i + ": " + e.getMessage(), e);
            }
        }
        KafkaProducer<byte[], byte[]> ordered = new KafkaProducer<>(orderedProducerProps());
        try {
            // Metadata first: send() would otherwise wait max.block.ms for it per record when
            // the topic is missing or a partition out of range.
            int partitions = ordered.partitionsFor(topic).size();
            for (int i = 0; i < toSend.size(); i++) {
                Integer partition = toSend.get(i).partition();
                if (partition != null && (partition < 0 || partition >= partitions)) {
                    throw new IllegalArgumentException("produce-records: record " + i + ": partition "
                            + partition + ", but " + topic + " has " + partitions + " partitions");
                }
            }
            List<Future<RecordMetadata>> sent = new ArrayList<>(toSend.size());
            for (ProducerRecord<byte[], byte[]> record : toSend) {
                sent.add(ordered.send(record));
            }
            ArrayNode out = KafkaTool.array();
            for (int i = 0; i < sent.size(); i++) {
                RecordMetadata metadata;
                try {
                    metadata = sent.get(i).get();
                } catch (ExecutionException e) {
                    Throwable cause = e.getCause() == null ? e : e.getCause();
                    throw new IllegalStateException("produce-records to " + topic + ": record " + i
                            + " failed: " + cause.getClass().getName() + ": " + cause.getMessage(), cause);
                }
                ObjectNode landed = out.addObject();
                landed.put("partition", metadata.partition());
                landed.put("offset", metadata.offset());
            }
            return out;
        } finally {
            // Immediate after success (nothing pending); after a failure, gives up on the rest.
            ordered.close(Duration.ofSeconds(5));
        }
    }

    private static ProducerRecord<byte[], byte[]> producerRecord(String topic, JsonNode record) {
        if (!record.isObject()) {
            throw new IllegalArgumentException("not a JSON object: " + record);
        }
        Integer partition = null;
        if (record.hasNonNull("partition")) {
            if (!record.get("partition").canConvertToInt() || !record.get("partition").isIntegralNumber()) {
                throw new IllegalArgumentException("\"partition\" is not an int: " + record.get("partition"));
            }
            partition = record.get("partition").asInt();
        }
        byte[] key = record.hasNonNull("key") ? utf8(record.get("key"), "key") : null;
        byte[] value;
        if (record.has("value") == record.has("value_b64")) {
            throw new IllegalArgumentException("needs exactly one of \"value\" and \"value_b64\"");
        } else if (record.has("value")) {
            value = utf8(record.get("value"), "value");
        } else {
            JsonNode b64 = record.get("value_b64");
            if (!b64.isTextual()) {
                throw new IllegalArgumentException("\"value_b64\" is not a string: " + b64);
            }
            value = B64_DECODE.decode(b64.asText());
        }
        List<Header> headers = new ArrayList<>();
        JsonNode given = record.path("headers");
        if (given.isObject()) {
            for (Map.Entry<String, JsonNode> header : given.properties()) {
                headers.add(new RecordHeader(header.getKey(), utf8(header.getValue(), "header value")));
            }
        } else if (given.isArray()) {
            for (JsonNode pair : given) {
                if (!pair.isArray() || pair.size() != 2 || !pair.get(0).isTextual()) {
                    throw new IllegalArgumentException("a header is not a [\"name\", \"value\"] pair: " + pair);
                }
                headers.add(new RecordHeader(pair.get(0).asText(), utf8(pair.get(1), "header value")));
            }
        } else if (!given.isMissingNode() && !given.isNull()) {
            throw new IllegalArgumentException("\"headers\" is neither an object nor an array: " + given);
        }
        return new ProducerRecord<>(topic, partition, key, value, headers);
    }

    private static byte[] utf8(JsonNode text, String what) {
        if (!text.isTextual()) {
            throw new IllegalArgumentException(what + " is not a string: " + text);
        }
        return text.asText().getBytes(StandardCharsets.UTF_8);
    }

    /**
     * The producer of {@code produce-records}: acks=all with idempotence (no duplicates from
     * retries; at most 5 in-flight requests per connection keep the send order). Timeouts stay
     * under the Rust side's 120 s, so a stuck send answers Kafka's error, not a bare timeout.
     */
    private Properties orderedProducerProps() {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        return props;
    }

    /**
     * Allows (add) or stops allowing (remove) {@code principal} the {@code operations} (e.g.
     * {@code ["WRITE"]}, as {@code kafka-acls --operation} names them) on the literal topic
     * {@code topic}, or on the cluster when {@code topic} is null, from any host. Returns once
     * the controller has committed the change; brokers apply it from the metadata log shortly after.
     */
    private JsonNode acls(JsonNode args, boolean add) throws Exception {
        String principal = args.path("principal").asText();
        ResourcePattern resource = args.hasNonNull("topic")
                ? new ResourcePattern(ResourceType.TOPIC, args.get("topic").asText(), PatternType.LITERAL)
                : new ResourcePattern(ResourceType.CLUSTER, "kafka-cluster", PatternType.LITERAL);
        List<AclBinding> bindings = new ArrayList<>();
        for (JsonNode name : args.get("operations")) {
            AclOperation operation = AclOperation.fromString(name.asText());
            if (operation == AclOperation.UNKNOWN) {
                throw new IllegalArgumentException("unknown ACL operation " + name.asText());
            }
            AccessControlEntry entry = new AccessControlEntry(principal, "*", operation, AclPermissionType.ALLOW);
            bindings.add(new AclBinding(resource, entry));
        }
        if (add) {
            admin.createAcls(bindings).all().get();
        } else {
            List<AclBindingFilter> filters = bindings.stream().map(AclBinding::toFilter).toList();
            admin.deleteAcls(filters).all().get();
        }
        return KafkaTool.JSON.nullNode();
    }

    /**
     * acks=1 (so a scratch topic with one replica works under any min.insync.replicas), which
     * needs idempotence off; neither takes part in choosing a partition.
     */
    private synchronized KafkaProducer<byte[], byte[]> producer() {
        if (producer == null) {
            Properties props = new Properties();
            props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            props.put(ProducerConfig.ACKS_CONFIG, "1");
            props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
            props.put(ProducerConfig.LINGER_MS_CONFIG, "0");
            producer = new KafkaProducer<>(props);
        }
        return producer;
    }

    /** Every record of every partition, from the beginning up to the end offsets at call time. */
    private JsonNode readTopic(String name, long timeoutMs) throws Exception {
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(consumerProps())) {
            List<PartitionInfo> infos = consumer.partitionsFor(name, Duration.ofSeconds(30));
            if (infos == null || infos.isEmpty()) {
                throw new IllegalArgumentException("topic " + name + " does not exist");
            }
            List<TopicPartition> partitions = new ArrayList<>();
            infos.forEach(i -> partitions.add(new TopicPartition(name, i.partition())));
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            Map<TopicPartition, Long> end = consumer.endOffsets(partitions, Duration.ofSeconds(30));
            Map<Integer, List<ConsumerRecord<byte[], byte[]>>> byPartition = new TreeMap<>();
            partitions.forEach(tp -> byPartition.put(tp.partition(), new ArrayList<>()));
            long deadline = System.nanoTime() + Duration.ofMillis(timeoutMs).toNanos();
            List<TopicPartition> open = new ArrayList<>(partitions);
            while (true) {
                open.removeIf(tp -> consumer.position(tp) >= end.get(tp));
                consumer.pause(partitions.stream().filter(tp -> !open.contains(tp)).toList());
                if (open.isEmpty()) {
                    break;
                }
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("read-topic " + name + " timed out; unfinished: " + open);
                }
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(200))) {
                    TopicPartition tp = new TopicPartition(record.topic(), record.partition());
                    if (record.offset() < end.get(tp)) {
                        byPartition.get(record.partition()).add(record);
                    }
                }
            }
            ArrayNode out = KafkaTool.array();
            byPartition.values().forEach(records -> records.forEach(r -> out.add(toJson(r))));
            return out;
        }
    }

    private Properties consumerProps() {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.ALLOW_AUTO_CREATE_TOPICS_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "100");
        return props;
    }

    private static ObjectNode toJson(ConsumerRecord<byte[], byte[]> r) {
        ObjectNode out = KafkaTool.JSON.createObjectNode();
        out.put("partition", r.partition());
        out.put("offset", r.offset());
        out.put("timestamp", r.timestamp());
        r.leaderEpoch().ifPresentOrElse(epoch -> out.put("leader_epoch", epoch), () -> out.putNull("leader_epoch"));
        out.put("key", r.key() == null ? null : B64.encodeToString(r.key()));
        out.put("value", r.value() == null ? null : B64.encodeToString(r.value()));
        ArrayNode headers = out.putArray("headers");
        for (Header header : r.headers()) {
            ArrayNode pair = headers.addArray();
            pair.add(header.key());
            pair.add(header.value() == null ? null : B64.encodeToString(header.value()));
        }
        return out;
    }

    private static List<Integer> ints(JsonNode array) {
        List<Integer> out = new ArrayList<>();
        array.forEach(n -> out.add(n.asInt()));
        return out;
    }
}
