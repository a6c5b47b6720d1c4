// KafkaCheck waits until a Kafka broker answers metadata requests, for scripts/kafka-local.sh.
//
// Usage: java -cp 'libs/*' KafkaCheck.java <bootstrap> <timeout-seconds>
// Exits 0 once the cluster reports at least one broker node and a topic listing succeeds;
// exits 1 with the last error when the timeout runs out. Run as a single-file source program,
// so it needs nothing but the broker's own jars.
import java.time.Duration;
import java.time.Instant;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

public class KafkaCheck {
    public static void main(String[] args) throws Exception {
        String bootstrap = args.length > 0 ? args[0] : "127.0.0.1:29092";
        long timeoutSec = args.length > 1 ? Long.parseLong(args[1]) : 60;
        Instant deadline = Instant.now().plus(Duration.ofSeconds(timeoutSec));

        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");

        Exception last = null;
        try (Admin admin = Admin.create(props)) {
            while (Instant.now().isBefore(deadline)) {
                try {
                    int nodes = admin.describeCluster().nodes().get(5, TimeUnit.SECONDS).size();
                    admin.listTopics().names().get(5, TimeUnit.SECONDS);
                    if (nodes > 0) {
                        System.out.println("kafka at " + bootstrap + " answers metadata requests (" + nodes + " broker)");
                        return;
                    }
                } catch (Exception e) {
                    last = e;
                }
                Thread.sleep(250);
            }
        }
        System.err.println("kafka at " + bootstrap + " did not answer within " + timeoutSec + "s: " + last);
        System.exit(1);
    }
}
