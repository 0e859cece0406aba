// Creates and removes SCRAM users and ACLs on a broker through Kafka's own Admin API, from a plan on stdin (so
// no password is ever on a command line). Run as a single-file program with the broker's jars on the classpath:
//   java -cp '<libs>/*' Provision.java <bootstrap> <admin user>     (admin password in LIENTHONG_KAFKA_ADMIN_PASSWORD;
//   with LIENTHONG_KAFKA_CA_FILE, over TLS trusting that CA: SASL_SSL)
// Plan lines:
//   user <name> <password>       create or replace a SCRAM-SHA-512 credential
//   nouser <name>                delete it
//   allow <principal> <TOPIC|GROUP|CLUSTER> <name> <LITERAL|PREFIXED> <READ|WRITE|DESCRIBE|...>
//   revoke <principal>           delete every ACL of that principal
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialDeletion;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;

public class Provision {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        String ca = System.getenv("LIENTHONG_KAFKA_CA_FILE");
        props.put("security.protocol", ca == null || ca.isEmpty() ? "SASL_PLAINTEXT" : "SASL_SSL");
        if (ca != null && !ca.isEmpty()) {
            props.put("ssl.truststore.type", "PEM");
            props.put("ssl.truststore.location", ca);
        }
        props.put("sasl.mechanism", "SCRAM-SHA-512");
        props.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
                + args[1] + "\" password=\"" + System.getenv("LIENTHONG_KAFKA_ADMIN_PASSWORD") + "\";");
        List<UserScramCredentialAlteration> users = new ArrayList<>();
        List<AclBinding> allow = new ArrayList<>();
        List<AclBindingFilter> revoke = new ArrayList<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        for (String line; (line = in.readLine()) != null; ) {
            String[] f = line.trim().split("\\s+");
            switch (f[0]) {
                case "user" -> users.add(new UserScramCredentialUpsertion(
                        f[1], new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), f[2]));
                case "nouser" -> users.add(new UserScramCredentialDeletion(f[1], ScramMechanism.SCRAM_SHA_512));
                case "allow" -> allow.add(new AclBinding(
                        new ResourcePattern(ResourceType.fromString(f[2]), f[3], PatternType.fromString(f[4])),
                        new AccessControlEntry(f[1], "*", AclOperation.fromString(f[5]), AclPermissionType.ALLOW)));
                case "revoke" -> revoke.add(new AclBindingFilter(ResourcePatternFilter.ANY,
                        new AccessControlEntryFilter(f[1], null, AclOperation.ANY, AclPermissionType.ANY)));
                case "" -> { }
                default -> throw new IllegalArgumentException("unknown plan line: " + f[0]);
            }
        }
        try (Admin admin = Admin.create(props)) {
            if (!revoke.isEmpty()) admin.deleteAcls(revoke).all().get();
            if (!users.isEmpty()) admin.alterUserScramCredentials(users).all().get();
            if (!allow.isEmpty()) admin.createAcls(allow).all().get();
        }
        System.out.println("users " + users.size() + ", acls " + allow.size() + ", revoked " + revoke.size());
    }
}
