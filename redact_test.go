package zkafka

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	clientPassword = "client-hunter2"
	topicPassword  = "topic-hunter2"
	propSecret     = "prop-hunter2"
	urlPassword    = "url-hunter2"
)

func secretConfigs() (Config, ConsumerTopicConfig, ProducerTopicConfig, SchemaRegistryConfig) {
	sr := SchemaRegistryConfig{URL: "https://sr-user:" + urlPassword + "@registry:8081", SubjectName: "s"}
	props := map[string]any{
		"ssl.key.password":               propSecret,
		"sasl.oauthbearer.client.secret": propSecret,
		"ssl.key.pem":                    propSecret,
		"sasl.password":                  propSecret,
		"compression.type":               "zstd",
	}
	conf := Config{BootstrapServers: []string{"b:1"}, SaslUsername: ptrOf("user"), SaslPassword: ptrOf(clientPassword), CAFile: "/ca.pem"}
	pc := ProducerTopicConfig{ClientID: "p", Topic: "t", SaslUsername: ptrOf("tuser"), SaslPassword: ptrOf(topicPassword),
		AdditionalProps: props, SchemaRegistry: sr, DeliveryTimeoutMs: ptrOf(5), EnableIdempotence: ptrOf(true)}
	cc := ConsumerTopicConfig{ClientID: "c", GroupID: "g", Topic: "t", SaslUsername: ptrOf("tuser"), SaslPassword: ptrOf(topicPassword),
		AdditionalProps: props, SchemaRegistry: sr, DeadLetterTopicConfig: &pc, ReadTimeoutMillis: ptrOf(7)}
	return conf, cc, pc, sr
}

func requireNoSecret(t *testing.T, s string) {
	t.Helper()
	for _, secret := range []string{clientPassword, topicPassword, propSecret, urlPassword} {
		require.NotContains(t, s, secret)
	}
}

// TestG13ConfigsPrintNoSecret formats every config type with every verb a user or a log
// library might use, by value and by pointer.
func TestG13ConfigsPrintNoSecret(t *testing.T) {
	conf, cc, pc, sr := secretConfigs()
	for _, v := range []any{conf, &conf, cc, &cc, pc, &pc, sr, &sr, []any{conf, cc}, map[string]any{"c": cc}} {
		s := sprintAll(v) + fmt.Sprintf("%q %s %+v", v, v, struct{ C any }{v})
		requireNoSecret(t, s)
		if _, isSR := v.(SchemaRegistryConfig); !isSR && v != any(&sr) {
			require.Contains(t, s, "***")
		}
	}
	for _, s := range []string{conf.String(), cc.String(), pc.String(), sr.String(), conf.GoString(), cc.GoString(), pc.GoString(), sr.GoString()} {
		requireNoSecret(t, s)
	}
}

// The printed forms still tell a reader what is configured.
func TestConfigPrintShowsFields(t *testing.T) {
	conf, cc, pc, _ := secretConfigs()
	require.Equal(t, "{BootstrapServers:[b:1] SaslUsername:user SaslPassword:*** CAFile:/ca.pem KeyFile: CertFile:}", conf.String())
	require.Equal(t, `zkafka.Config{BootstrapServers:[]string{"b:1"}, SaslUsername:&"user", SaslPassword:***, CAFile:"/ca.pem", KeyFile:"", CertFile:""}`,
		fmt.Sprintf("%#v", conf))
	require.Equal(t, "{BootstrapServers:[] SaslUsername:<nil> SaslPassword:<nil> CAFile: KeyFile: CertFile:}", Config{}.String())
	s := fmt.Sprintf("%v", cc)
	for _, want := range []string{"ClientID:c", "GroupID:g", "ReadTimeoutMillis:7", "compression.type:zstd", "ssl.key.password:***",
		"URL:https://sr-user:xxxxx@registry:8081", "DeadLetterTopicConfig:{ClientID:p", "SaslUsername:tuser"} {
		require.Contains(t, s, want)
	}
	require.Contains(t, fmt.Sprintf("%+v", pc), "DeliveryTimeoutMs:5 ")
	require.Contains(t, fmt.Sprintf("%#v", pc), "EnableIdempotence:&true")
}

// TestG13ClientLogsNoSecret runs a client through what it logs (creating writers, failing
// validation) with a capturing logger and checks no line holds a secret.
func TestG13ClientLogsNoSecret(t *testing.T) {
	conf, cc, pc, _ := secretConfigs()
	lg := newCaptureLogger()
	fp := newFakeProducerFactory()
	c := NewClient(conf, LoggerOption(lg), WithProducerProvider(fp.provider))
	w, err := c.Writer(t.Context(), pc)
	require.NoError(t, err)
	_, err = w.WriteRaw(t.Context(), nil, []byte("v"))
	require.NoError(t, err)

	bad := cc
	bad.GroupID = ""
	_, err = c.Reader(t.Context(), bad)
	require.Error(t, err)
	requireNoSecret(t, err.Error())
	bad = cc
	bad.SaslUsername = nil
	_, err = c.Reader(t.Context(), bad)
	require.Error(t, err)
	requireNoSecret(t, err.Error())

	// Lines the engine will log with the configs as values.
	lg.Infow(context.Background(), "starting", "consumer", cc, "producer", &pc, "client", conf)
	require.NoError(t, c.Close())

	lines := lg.all()
	require.NotEmpty(t, lines)
	require.True(t, strings.Contains(strings.Join(lines, "\n"), "created writer"))
	for _, l := range lines {
		requireNoSecret(t, l)
	}
	// The producer did get the secrets: redaction is only for printing. (AdditionalProps
	// win over the topic's password.)
	require.Equal(t, "tuser", fp.last()["sasl.username"])
	require.Equal(t, propSecret, fp.last()["sasl.password"])
}

// TestEveryConfigFieldIsPrintedOrRedacted walks the exported fields of every config type by
// reflection, nested ones too, sets each to a value of its own, and checks that String and
// GoString show it, or show "***" in place of a secret. A field added to a config and not to
// its printer (redact.go) fails here.
func TestEveryConfigFieldIsPrintedOrRedacted(t *testing.T) {
	secret := map[string]bool{"SaslPassword": true}
	for _, cfg := range []any{Config{}, ConsumerTopicConfig{}, ProducerTopicConfig{}, SchemaRegistryConfig{}} {
		typ := reflect.TypeOf(cfg)
		for _, path := range leafFields(typ, nil) {
			name := typ.Name() + "." + strings.Join(fieldNames(typ, path), ".")
			t.Run(name, func(t *testing.T) {
				v := reflect.New(typ).Elem()
				shown := markLeaf(v, path, len(path))
				leaf := fieldNames(typ, path)[len(path)-1]
				for _, out := range []string{v.Interface().(fmt.Stringer).String(), v.Interface().(fmt.GoStringer).GoString()} {
					require.Contains(t, out, leaf+":", "%s is not printed: %s", name, out)
					if secret[leaf] {
						require.NotContains(t, out, shown, "%s is printed: %s", name, out)
						require.Contains(t, out, leaf+":***", out)
						continue
					}
					require.Contains(t, out, shown, "%s's value is not printed: %s", name, out)
				}
			})
		}
	}
}

// leafFields lists the paths (field indexes) of every exported field of typ that holds a
// value rather than a struct, going into struct and pointer-to-struct fields.
func leafFields(typ reflect.Type, prefix []int) [][]int {
	var out [][]int
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		path := append(append([]int(nil), prefix...), i)
		ft := f.Type
		if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			out = append(out, leafFields(ft, path)...)
			continue
		}
		out = append(out, path)
	}
	return out
}

// fieldNames names the fields along path.
func fieldNames(typ reflect.Type, path []int) []string {
	var names []string
	for _, i := range path {
		if typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		f := typ.Field(i)
		names = append(names, f.Name)
		typ = f.Type
	}
	return names
}

// markLeaf sets the field at path in v to a value of its own and returns how it is printed.
func markLeaf(v reflect.Value, path []int, salt int) string {
	for _, i := range path[:len(path)-1] {
		v = v.Field(i)
		if v.Kind() == reflect.Pointer {
			v.Set(reflect.New(v.Type().Elem()))
			v = v.Elem()
		}
	}
	f := v.Field(path[len(path)-1])
	target := f
	if f.Kind() == reflect.Pointer {
		f.Set(reflect.New(f.Type().Elem()))
		target = f.Elem()
	}
	mark := fmt.Sprintf("mark%d", 7000+salt*10+path[len(path)-1])
	switch target.Kind() {
	case reflect.String:
		target.SetString(mark)
	case reflect.Int, reflect.Int32, reflect.Int64:
		target.SetInt(int64(7000 + salt*10 + path[len(path)-1]))
		return strings.TrimPrefix(mark, "mark")
	case reflect.Bool:
		target.SetBool(true)
		return "true"
	case reflect.Slice:
		target.Set(reflect.ValueOf([]string{mark}))
	case reflect.Map:
		target.Set(reflect.ValueOf(map[string]any{"some.setting": mark}))
	default:
		panic("a config field of a kind this test does not know: " + target.Kind().String())
	}
	return mark
}
