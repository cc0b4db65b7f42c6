package routegate.harness;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
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
