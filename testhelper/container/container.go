// Package container starts Apache Kafka in a Docker container with testcontainers-go for
// testhelper.NewBroker. It is apart from testhelper so that a program importing testhelper
// (an example, a user's test helper) does not pull Docker and testcontainers in. Import it for
// its effect in the tests that may run on a container:
//
//	import _ "github.com/zkafka-go/zkafka/testhelper/container"
//
// Then ZKAFKA_TESTCONTAINERS=1 makes testhelper.NewBroker start Kafka in a container when a
// Docker daemon answers, and fall back to the embedded broker when none does.
package container

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/zkafka-go/zkafka/testhelper"
)

func init() { testhelper.RegisterContainerStarter(Start) }

// ContainerImage is the Apache Kafka image started when ZKAFKA_TESTCONTAINERS=1 and Docker
// answers. It is the same image docker-compose.yaml uses.
const ContainerImage = "apache/kafka:4.1.1"

const (
	containerPort    = "9093/tcp" // the listener published to the host
	containerStarter = "/tmp/zkafka_start.sh"
)

// Start starts Apache Kafka with testcontainers-go, stopped when the test ends, and returns
// its bootstrap address. It reports false, so the caller falls back to the embedded broker,
// when no Docker daemon answers; once Docker answers, a failure to start Kafka fails the test.
func Start(t testing.TB) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	provider, err := testcontainers.NewDockerProvider()
	if err != nil {
		t.Logf("testhelper: %s=1 but Docker is unavailable (%v); using the embedded broker", testhelper.EnvTestcontainers, err)
		return "", false
	}
	healthCtx, healthCancel := context.WithTimeout(ctx, 5*time.Second)
	err = provider.Health(healthCtx)
	healthCancel()
	_ = provider.Close()
	if err != nil {
		t.Logf("testhelper: %s=1 but Docker does not answer (%v); using the embedded broker", testhelper.EnvTestcontainers, err)
		return "", false
	}

	// The broker must advertise the host's mapped port, known only once the container runs,
	// so the container waits for a starter script that exports it and then runs the image's
	// own entrypoint.
	ctr, err := testcontainers.Run(ctx, ContainerImage,
		testcontainers.WithExposedPorts(containerPort),
		testcontainers.WithEnv(map[string]string{
			"KAFKA_NODE_ID":                                  "1",
			"KAFKA_PROCESS_ROLES":                            "broker,controller",
			"KAFKA_LISTENERS":                                "PLAINTEXT://0.0.0.0:9093,BROKER://0.0.0.0:9092,CONTROLLER://0.0.0.0:9094",
			"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "BROKER:PLAINTEXT,PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
			"KAFKA_INTER_BROKER_LISTENER_NAME":               "BROKER",
			"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@localhost:9094",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
			"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
			"KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS":             fmt.Sprint(testhelper.MinSessionTimeout.Milliseconds()),
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "true",
			"KAFKA_NUM_PARTITIONS":                           "1",
		}),
		testcontainers.WithEntrypoint("sh"),
		testcontainers.WithCmd("-c", "while [ ! -f "+containerStarter+" ]; do sleep 0.1; done; exec bash "+containerStarter),
		testcontainers.WithLifecycleHooks(testcontainers.ContainerLifecycleHooks{
			PostStarts: []testcontainers.ContainerHook{
				func(ctx context.Context, c testcontainers.Container) error {
					if err := wait.ForMappedPort(containerPort).WaitUntilReady(ctx, c); err != nil {
						return fmt.Errorf("waiting for the mapped port: %w", err)
					}
					endpoint, err := c.PortEndpoint(ctx, containerPort, "")
					if err != nil {
						return fmt.Errorf("reading the mapped port: %w", err)
					}
					script := "#!/bin/bash\n" +
						"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://" + endpoint + ",BROKER://localhost:9092\n" +
						"exec /etc/kafka/docker/run\n"
					if err := c.CopyToContainer(ctx, []byte(script), containerStarter, 0o755); err != nil {
						return fmt.Errorf("copying the starter script: %w", err)
					}
					return wait.ForLog("Kafka Server started").WithStartupTimeout(2*time.Minute).WaitUntilReady(ctx, c)
				},
			},
		}),
	)
	if ctr != nil {
		t.Cleanup(func() {
			if err := testcontainers.TerminateContainer(ctr); err != nil {
				t.Logf("testhelper: terminating the kafka container: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("testhelper: starting %s with testcontainers: %v", ContainerImage, err)
	}
	addr, err := ctr.PortEndpoint(ctx, containerPort, "")
	if err != nil {
		t.Fatalf("testhelper: reading the kafka container's port: %v", err)
	}
	return addr, true
}
