package zkafka

import (
	"hash/fnv"
	"math"
	"strings"
	"testing"
	"time"
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

// FuzzCommitTracker runs a random sequence of reads (add) and completions (finish, in any
// order, with duplicates and stale sequence numbers) against a model. After every step the
// stored offset must be 1 + the offset of the last message of the longest finished prefix of
// the read order (-1 while that prefix is empty) — so it never passes an unfinished message —
// and finish must report a move exactly when the stored offset changed.
func FuzzCommitTracker(f *testing.F) {
	f.Add([]byte{0x80, 0x00})
	f.Add([]byte{0x81, 0x82, 0x83, 0x02, 0x01, 0x00})
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x03, 0x03, 0x01, 0x00, 0x7f, 0x02})
	f.Add([]byte{0xff, 0xfe, 0x00, 0x00, 0xc0, 0x01, 0x40})
	ops := make([]byte, 0, 400)
	for i := range 200 {
		ops = append(ops, 0x80|byte(i%5), byte(i*37))
	}
	f.Add(ops)
	f.Fuzz(func(t *testing.T, ops []byte) {
		owner := newCommitTracker()
		tr := owner.get("t", 0)
		type entry struct {
			seq    uint64
			offset int64
			done   bool
		}
		var model []entry // read order
		var off int64 = -1
		stored := int64(-1)
		for step, op := range ops {
			if op&0x80 != 0 {
				off += 1 + int64(op&0x0f) // gaps, like compaction or transaction markers
				seq := trackAdd(tr, off)
				if n := len(model); n > 0 && seq != model[n-1].seq+1 {
					t.Fatalf("step %d: add returned seq %d after %d", step, seq, model[n-1].seq)
				}
				model = append(model, entry{seq: seq, offset: off})
				continue
			}
			if len(model) == 0 {
				continue
			}
			// Finish an entry chosen by the low bits; bit 6 replays a finish of an already
			// finished (maybe popped) entry, which must change nothing.
			i := int(op&0x3f) % len(model)
			if op&0x40 == 0 {
				for j := range len(model) {
					if k := (i + j) % len(model); !model[k].done {
						i = k
						break
					}
				}
			}
			moved := tr.finish(model[i].seq)
			model[i].done = true
			want := int64(-1)
			for _, e := range model {
				if !e.done {
					break
				}
				want = e.offset + 1
			}
			if want == -1 {
				want = stored // nothing popped yet stays -1; popped prefix keeps its value
			}
			tr.mu.Lock()
			got := tr.next
			tr.mu.Unlock()
			if got != want {
				t.Fatalf("step %d: stored offset %d, model says %d (model %v)", step, got, want, model)
			}
			for _, e := range model {
				if !e.done && got > e.offset {
					t.Fatalf("step %d: stored offset %d passes unfinished offset %d", step, got, e.offset)
				}
			}
			if moved != (got != stored) {
				t.Fatalf("step %d: finish reported moved=%v but the stored offset went %d -> %d", step, moved, stored, got)
			}
			if moved {
				if o, ok := tr.take(time.Now()); !ok || o != got {
					t.Fatalf("step %d: take() = %d, %v after a move to %d", step, o, ok, got)
				}
			}
			stored = got
			// Drop the popped prefix from the model, as the ring does.
			for len(model) > 0 && model[0].done {
				model = model[1:]
			}
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
