package zkafka

import (
	"hash/fnv"
	"math"
	"strings"
	"testing"
)

// The fuzz targets of the engine's pure parts. Run one with
//
//	go test -run '^$' -fuzz FuzzRouteKey -fuzztime 2m .
//
// The seed corpora live in testdata/fuzz/<FuzzName>/ and run with every plain `go test`.

// FuzzRouteKey checks the key → virtual partition mapping: in range for every n in 1..1024,
// stable (the same answer twice, and the documented 32-bit FNV-1a mixed by murmur3's fmix32,
// modulo n, so it holds across processes and releases).
func FuzzRouteKey(f *testing.F) {
	for _, k := range []string{"", "a", "k1", "order-42", "\x00\xff", strings.Repeat("x", 300), "ключ"} {
		f.Add(k, uint16(1))
		f.Add(k, uint16(7))
		f.Add(k, uint16(1024))
	}
	f.Fuzz(func(t *testing.T, key string, nRaw uint16) {
		n := 1 + int(nRaw)%1024
		got := routeKey(key, n)
		if got < 0 || got >= n {
			t.Fatalf("routeKey(%q, %d) = %d, out of [0,%d)", key, n, got, n)
		}
		if again := routeKey(key, n); again != got {
			t.Fatalf("routeKey(%q, %d) is not stable: %d then %d", key, n, got, again)
		}
		h := fnv.New32a()
		_, _ = h.Write([]byte(key))
		x := h.Sum32()
		x ^= x >> 16
		x *= 0x85ebca6b
		x ^= x >> 13
		x *= 0xc2b2ae35
		x ^= x >> 16
		if want := int(x % uint32(n)); got != want {
			t.Fatalf("routeKey(%q, %d) = %d, want fmix32(FNV-1a) mod n = %d", key, n, got, want)
		}
	})
}

// FuzzConfigValidation feeds arbitrary field values to the consumer and producer configs:
// validation and the librdkafka mapping must never panic, and every validation error must be
// a configuration error (IsConfigError) that does not leak the password.
func FuzzConfigValidation(f *testing.F) {
	f.Add("c", "g", "t", "", "localhost:9092", "", "json", "u", "p", "k", "v", int64(1), int64(2), int64(3), uint16(0xffff))
	f.Add("", "", "", "", "", "", "", "", "", "", "", int64(0), int64(0), int64(0), uint16(0))
	f.Add("c", "g", "", "a,b", "h:1", "h:2", "avro", "", "secret", "sasl.password", "x", int64(-1), int64(61000), int64(1000), uint16(0x5555))
	f.Add("c", "g", "t", "", "h:1", "", "nope", "u", "", "session.timeout.ms", "abc", int64(math.MaxInt32), int64(math.MinInt64), int64(7), uint16(0xaaaa))
	f.Fuzz(func(t *testing.T, clientID, group, topic, topics, boot, topicBoot, format, user, pass, propKey, propVal string, a, b, c int64, mask uint16) {
		ip := func(bit uint, v int64) *int {
			if mask&(1<<bit) == 0 {
				return nil
			}
			i := int(v)
			return &i
		}
		sp := func(bit uint, v string) *string {
			if mask&(1<<bit) == 0 {
				return nil
			}
			return &v
		}
		conf := Config{BootstrapServers: strings.Split(boot, ","), SaslUsername: sp(0, user), SaslPassword: sp(1, pass)}
		if mask&(1<<15) != 0 {
			conf.CAFile, conf.KeyFile, conf.CertFile = topic, user, group
		}
		var props map[string]any
		if mask&(1<<2) != 0 {
			props = map[string]any{propKey: propVal}
			if mask&(1<<14) != 0 {
				props[propKey] = int(a)
			}
		}
		var dlt *ProducerTopicConfig
		pc := ProducerTopicConfig{
			ClientID: clientID, Topic: topic, BootstrapServers: strings.Split(topicBoot, ","),
			DeliveryTimeoutMs: ip(3, a), AdditionalProps: props, Formatter: FormatterType(format),
			RequestRequiredAcks: sp(4, propVal), LingerMillis: int(b), SaslUsername: sp(5, user), SaslPassword: sp(6, pass),
			Transaction: mask&(1<<7) != 0,
		}
		if mask&(1<<8) != 0 {
			dlt = &pc
		}
		cc := ConsumerTopicConfig{
			ClientID: clientID, GroupID: group, Topic: topic, Topics: strings.Split(topics, ","),
			BootstrapServers: strings.Split(topicBoot, ","), AutoCommitIntervalMs: ip(9, c), AdditionalProps: props,
			Formatter: FormatterType(format), ReadTimeoutMillis: ip(10, a), ProcessTimeoutMillis: ip(11, b),
			SessionTimeoutMillis: ip(12, c), MaxPollIntervalMillis: ip(13, a), ProcessDelayMillis: ip(3, b),
			SaslUsername: sp(5, user), SaslPassword: sp(6, pass), Transaction: mask&(1<<7) != 0,
			DeadLetterTopicConfig: dlt,
		}
		check := func(what string, err error) {
			if err == nil {
				return
			}
			if !IsConfigError(err) {
				t.Fatalf("%s returned a non-config error: %v", what, err)
			}
			if len(pass) >= 4 && strings.Contains(err.Error(), pass) && !strings.Contains(clientID+group+topic+topics+boot+topicBoot+format+user+propKey+propVal, pass) {
				t.Fatalf("%s error leaks the password: %v", what, err)
			}
		}
		check("validateConsumer", validateConsumer(conf, cc))
		check("validateProducer", validateProducer(conf, pc))
		_ = makeConsumerConfig(conf, cc, group)
		_ = makeProducerConfig(conf, pc)
		_ = cc.String()
		_ = pc.String()
		_ = conf.String()
	})
}
