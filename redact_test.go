package zkafka

import (
	"context"
	"fmt"
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
