#!/usr/bin/env bash
# kafka-local.sh — run a real Apache Kafka 4.x broker on 127.0.0.1:29092 without Docker.
#
#   scripts/kafka-local.sh start    fetch the jars (first run), format KRaft storage in a fresh
#                                   temp dir, start one combined broker+controller, wait until
#                                   it answers metadata requests, print the bootstrap address
#   scripts/kafka-local.sh stop     stop exactly the process in the pid file, remove its data
#   scripts/kafka-local.sh status   say whether it runs, where, and where its log is
#
# Needs Java 17+ and Maven. The jars come from Maven Central through scripts/kafka/pom.xml and
# are cached in ~/.cache/zkafka/kafka-<version>/libs. Environment (defaults in brackets):
#   KAFKA_VERSION        [4.4.0]                 broker version to fetch and run
#   ZKAFKA_CACHE_DIR     [~/.cache/zkafka]       where the jars are cached
#   ZKAFKA_KAFKA_RUN     [/tmp/zkafka-kafka]     holds the pid file and the data dir's path
#   ZKAFKA_KAFKA_PORT    [29092]                 broker port (the controller uses port+1; a
#                                                SASL_PLAINTEXT listener with mechanism PLAIN
#                                                and one user, admin/admin-secret, port+2: the
#                                                tests of refused logins use it)
#   ZKAFKA_KAFKA_HEAP    [512m]                  JVM heap
#   ZKAFKA_KAFKA_WAIT    [90]                    seconds to wait for the broker to answer
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
CACHE_DIR="${ZKAFKA_CACHE_DIR:-${HOME}/.cache/zkafka}/kafka-${KAFKA_VERSION}"
LIBS="${CACHE_DIR}/libs"
RUN_DIR="${ZKAFKA_KAFKA_RUN:-/tmp/zkafka-kafka}"
PID_FILE="${RUN_DIR}/kafka.pid"
DATA_FILE="${RUN_DIR}/data-dir"
PORT="${ZKAFKA_KAFKA_PORT:-29092}"
CONTROLLER_PORT="$((PORT + 1))"
SASL_PORT="$((PORT + 2))"
HEAP="${ZKAFKA_KAFKA_HEAP:-512m}"
WAIT_SECONDS="${ZKAFKA_KAFKA_WAIT:-90}"
BOOTSTRAP="127.0.0.1:${PORT}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "kafka-local: $*" >&2; }

# running prints the pid when the pid file names a live Kafka process, else fails.
running() {
	[[ -f "${PID_FILE}" ]] || return 1
	local pid
	pid="$(cat "${PID_FILE}")"
	[[ "${pid}" =~ ^[0-9]+$ ]] || return 1
	kill -0 "${pid}" 2>/dev/null || return 1
	# A recycled pid must not be mistaken for the broker.
	tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
	echo "${pid}"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

fetch_libs() {
	if [[ -f "${LIBS}/.complete" ]]; then
		return
	fi
	command -v mvn >/dev/null || { log "mvn not found: Maven is needed to fetch Kafka's jars"; exit 1; }
	log "fetching Apache Kafka ${KAFKA_VERSION} jars into ${LIBS} (first run only)"
	local tmp="${LIBS}.tmp.$$"
	rm -rf "${tmp}"
	mkdir -p "${CACHE_DIR}"
	if ! mvn -B -Dstyle.color=never -f "${HERE}/kafka/pom.xml" dependency:copy-dependencies \
		-Dkafka.version="${KAFKA_VERSION}" -DincludeScope=runtime -DoutputDirectory="${tmp}" \
		>"${CACHE_DIR}/mvn.log" 2>&1; then
		log "Maven could not fetch the jars; its log follows"
		tail -n 60 "${CACHE_DIR}/mvn.log" >&2
		exit 1
	fi
	rm -rf "${LIBS}"
	mv "${tmp}" "${LIBS}"
	touch "${LIBS}/.complete"
}

java_cmd() {
	java -Xmx256m -cp "${LIBS}/*" -Dlog4j2.configurationFile="${HERE}/kafka/log4j2.properties" \
		-Dkafka.logs.dir="$1" "${@:2}"
}

write_properties() {
	local data="$1"
	cat >"${data}/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:${CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:${PORT},CONTROLLER://127.0.0.1:${CONTROLLER_PORT},SASL_PLAINTEXT://127.0.0.1:${SASL_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${PORT},SASL_PLAINTEXT://127.0.0.1:${SASL_PORT}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret";
log.dirs=${data}/kraft
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
group.min.session.timeout.ms=1000
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.flush.interval.messages=9223372036854775807
EOF
}

start() {
	local pid
	if pid="$(running)"; then
		log "already running (pid ${pid}) at ${BOOTSTRAP}; not starting another"
		echo "${BOOTSTRAP}"
		return 0
	fi
	if port_open "${PORT}" || port_open "${CONTROLLER_PORT}" || port_open "${SASL_PORT}"; then
		log "port ${PORT}, ${CONTROLLER_PORT} or ${SASL_PORT} is taken by another process; stop it first"
		exit 1
	fi
	command -v java >/dev/null || { log "java not found: Java 17+ is needed"; exit 1; }
	fetch_libs

	mkdir -p "${RUN_DIR}"
	remove_data
	local data
	data="$(mktemp -d "${TMPDIR:-/tmp}/zkafka-kafka-data.XXXXXX")"
	echo "${data}" >"${DATA_FILE}"
	write_properties "${data}"

	local cluster_id
	cluster_id="$(java_cmd "${data}" kafka.tools.StorageTool random-uuid | tail -n1)"
	if ! java_cmd "${data}" kafka.tools.StorageTool format --standalone -t "${cluster_id}" \
		-c "${data}/server.properties" >"${data}/format.log" 2>&1; then
		log "formatting KRaft storage failed:"
		cat "${data}/format.log" >&2
		exit 1
	fi

	log "starting Apache Kafka ${KAFKA_VERSION} (data and logs in ${data})"
	nohup java -Xms"${HEAP}" -Xmx"${HEAP}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
		-Djava.awt.headless=true -Dkafka.logs.dir="${data}" \
		-Dlog4j2.configurationFile="${HERE}/kafka/log4j2.properties" \
		-cp "${LIBS}/*" kafka.Kafka "${data}/server.properties" \
		>"${data}/stdout.log" 2>&1 </dev/null &
	pid=$!
	echo "${pid}" >"${PID_FILE}"

	local deadline=$((SECONDS + WAIT_SECONDS))
	until port_open "${PORT}"; do
		if ! kill -0 "${pid}" 2>/dev/null || ((SECONDS >= deadline)); then
			fail_start "${pid}" "${data}"
		fi
		sleep 0.2
	done
	local left=$((deadline - SECONDS))
	((left > 5)) || left=5
	if ! java_cmd "${data}" "${HERE}/kafka/KafkaCheck.java" "${BOOTSTRAP}" "${left}" \
		>"${data}/check.log" 2>&1; then
		cat "${data}/check.log" >&2
		fail_start "${pid}" "${data}"
	fi
	log "ready (pid ${pid}) after ${SECONDS}s; SASL_PLAINTEXT (PLAIN, admin/admin-secret) at 127.0.0.1:${SASL_PORT}"
	echo "${BOOTSTRAP}"
}

fail_start() {
	local pid="$1" data="$2"
	log "Kafka did not come up; its logs follow (kept in ${data} until the next start or stop)"
	for f in stdout.log server.log; do
		[[ -f "${data}/${f}" ]] && { echo "--- ${data}/${f}" >&2; tail -n 80 "${data}/${f}" >&2; }
	done
	stop_pid "${pid}"
	rm -f "${PID_FILE}"
	exit 1
}

stop_pid() {
	local pid="$1"
	kill -0 "${pid}" 2>/dev/null || return 0
	kill -TERM "${pid}" 2>/dev/null || true
	for _ in $(seq 1 150); do
		kill -0 "${pid}" 2>/dev/null || return 0
		sleep 0.2
	done
	log "pid ${pid} ignored SIGTERM for 30s; killing it"
	kill -KILL "${pid}" 2>/dev/null || true
	wait "${pid}" 2>/dev/null || true
}

stop() {
	local pid
	if pid="$(running)"; then
		log "stopping pid ${pid}"
		stop_pid "${pid}"
	else
		log "not running"
	fi
	rm -f "${PID_FILE}"
	remove_data
}

# remove_data deletes the data dir recorded by the last start (a failed start keeps it so its
# logs can be read; the next start or stop removes it).
remove_data() {
	[[ -f "${DATA_FILE}" ]] || return 0
	local data
	data="$(cat "${DATA_FILE}")"
	# Remove only a data dir this script made.
	if [[ "${data}" == */zkafka-kafka-data.* && -d "${data}" ]]; then
		rm -rf "${data}"
	fi
	rm -f "${DATA_FILE}"
}

status() {
	local pid
	if pid="$(running)"; then
		echo "running: pid ${pid}, bootstrap ${BOOTSTRAP}, data $(cat "${DATA_FILE}" 2>/dev/null), log $(cat "${DATA_FILE}" 2>/dev/null)/server.log"
	else
		echo "not running"
		return 3
	fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: $0 start|stop|status" >&2
	exit 2
	;;
esac
