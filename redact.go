package zkafka

// Printing configs without their secrets (G13). The details are below the imports.

import (
	"fmt"
	"io"
	"net/url"
	"strings"
)

// This file keeps secrets out of printed configs (SPEC G13). Every config type formats itself
// through Format, so %v, %+v, %#v, %s and fmt.Sprint all print the fields with SaslPassword
// shown as "***", AdditionalProps values of secret-looking keys shown as "***" and any
// password inside the schema registry URL removed.

// redacted replaces a secret in printed output.
const redacted = "***"

// secretKeyParts mark an AdditionalProps key whose value is never printed: passwords,
// secrets, keys (ssl.key.pem, ssl.key.password), tokens and the OAUTHBEARER config.
var secretKeyParts = []string{"password", "secret", "key", "token", "credential", "sasl.oauthbearer.config", "jaas"}

// isSecretKey reports whether a librdkafka key may hold a secret.
func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	for _, p := range secretKeyParts {
		if strings.Contains(k, p) {
			return true
		}
	}
	return false
}

// redactProps returns a copy of props with the values of secret-looking keys replaced.
func redactProps(props map[string]any) map[string]any {
	if props == nil {
		return nil
	}
	out := make(map[string]any, len(props))
	for k, v := range props {
		if isSecretKey(k) {
			v = redacted
		}
		out[k] = v
	}
	return out
}

// redactURL removes the password of a URL's user info; other strings are returned as they are.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if strings.Contains(s, "@") && err != nil {
			return redacted
		}
		return s
	}
	return u.Redacted()
}

// structPrinter writes "{A:1 B:2}" (plain) or "zkafka.T{A:1, B:2}" (Go syntax).
type structPrinter struct {
	b        strings.Builder
	goSyntax bool
	n        int
}

func newStructPrinter(typeName string, goSyntax bool) *structPrinter {
	p := &structPrinter{goSyntax: goSyntax}
	if goSyntax {
		p.b.WriteString("zkafka." + typeName)
	}
	p.b.WriteByte('{')
	return p
}

func (p *structPrinter) sep(name string) {
	if p.n > 0 {
		if p.goSyntax {
			p.b.WriteString(", ")
		} else {
			p.b.WriteByte(' ')
		}
	}
	p.n++
	p.b.WriteString(name)
	p.b.WriteByte(':')
}

// field prints a value that holds no secret (nested configs redact themselves).
func (p *structPrinter) field(name string, v any) {
	p.sep(name)
	if p.goSyntax {
		fmt.Fprintf(&p.b, "%#v", v)
	} else {
		fmt.Fprintf(&p.b, "%v", v)
	}
}

// nested prints a struct field field by field, as print does with the struct of typeName,
// so that each of its fields is printed (or redacted) by name.
func (p *structPrinter) nested(name, typeName string, print func(*structPrinter)) {
	p.sep(name)
	q := newStructPrinter(typeName, p.goSyntax)
	print(q)
	p.b.WriteString(q.String())
}

// str prints an optional string by value.
func (p *structPrinter) str(name string, s *string) {
	if s == nil {
		p.nilField(name)
		return
	}
	p.sep(name)
	if p.goSyntax {
		fmt.Fprintf(&p.b, "&%q", *s)
	} else {
		p.b.WriteString(*s)
	}
}

// num prints an optional int by value.
func (p *structPrinter) num(name string, v *int) {
	if v == nil {
		p.nilField(name)
		return
	}
	p.sep(name)
	if p.goSyntax {
		p.b.WriteByte('&')
	}
	fmt.Fprintf(&p.b, "%d", *v)
}

// boolean prints an optional bool by value.
func (p *structPrinter) boolean(name string, v *bool) {
	if v == nil {
		p.nilField(name)
		return
	}
	p.sep(name)
	if p.goSyntax {
		p.b.WriteByte('&')
	}
	fmt.Fprintf(&p.b, "%t", *v)
}

// secret prints "***" for a set secret, never its value.
func (p *structPrinter) secret(name string, s *string) {
	if s == nil {
		p.nilField(name)
		return
	}
	p.sep(name)
	p.b.WriteString(redacted)
}

func (p *structPrinter) nilField(name string) {
	p.sep(name)
	if p.goSyntax {
		p.b.WriteString("nil")
	} else {
		p.b.WriteString("<nil>")
	}
}

func (p *structPrinter) String() string {
	p.b.WriteByte('}')
	return p.b.String()
}

// formatRedacted serves fmt.Formatter for the config types: %#v gets the Go syntax form,
// %q the quoted plain form, every other verb the plain form.
func formatRedacted(f fmt.State, verb rune, plain, goSyntax func() string) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = io.WriteString(f, goSyntax())
	case verb == 'q':
		_, _ = fmt.Fprintf(f, "%q", plain())
	default:
		_, _ = io.WriteString(f, plain())
	}
}

func (c Config) print(goSyntax bool) string {
	p := newStructPrinter("Config", goSyntax)
	p.field("BootstrapServers", c.BootstrapServers)
	p.str("SaslUsername", c.SaslUsername)
	p.secret("SaslPassword", c.SaslPassword)
	p.field("CAFile", c.CAFile)
	p.field("KeyFile", c.KeyFile)
	p.field("CertFile", c.CertFile)
	return p.String()
}

// String prints the fields with SaslPassword as "***".
func (c Config) String() string { return c.print(false) }

// GoString is %#v: the fields in Go syntax with SaslPassword as "***".
func (c Config) GoString() string { return c.print(true) }

// Format makes every fmt verb print the redacted form.
func (c Config) Format(f fmt.State, verb rune) { formatRedacted(f, verb, c.String, c.GoString) }

func (c SchemaRegistryConfig) print(goSyntax bool) string {
	p := newStructPrinter("SchemaRegistryConfig", goSyntax)
	p.field("URL", redactURL(c.URL))
	p.nested("Serialization", "SerializationConfig", func(q *structPrinter) {
		q.field("AutoRegisterSchemas", c.Serialization.AutoRegisterSchemas)
		q.field("Schema", c.Serialization.Schema)
	})
	p.nested("Deserialization", "DeserializationConfig", func(q *structPrinter) {
		q.field("Schema", c.Deserialization.Schema)
	})
	p.field("SubjectName", c.SubjectName)
	return p.String()
}

// String prints the fields with any password in URL removed.
func (c SchemaRegistryConfig) String() string { return c.print(false) }

// GoString is %#v: the fields in Go syntax with any password in URL removed.
func (c SchemaRegistryConfig) GoString() string { return c.print(true) }

// Format makes every fmt verb print the redacted form.
func (c SchemaRegistryConfig) Format(f fmt.State, verb rune) {
	formatRedacted(f, verb, c.String, c.GoString)
}

func (c ConsumerTopicConfig) print(goSyntax bool) string {
	p := newStructPrinter("ConsumerTopicConfig", goSyntax)
	p.field("ClientID", c.ClientID)
	p.field("GroupID", c.GroupID)
	p.field("Topic", c.Topic)
	p.field("Topics", c.Topics)
	p.field("BootstrapServers", c.BootstrapServers)
	p.num("AutoCommitIntervalMs", c.AutoCommitIntervalMs)
	p.field("AdditionalProps", redactProps(c.AdditionalProps))
	p.field("Formatter", c.Formatter)
	p.field("SchemaRegistry", c.SchemaRegistry)
	p.field("SchemaID", c.SchemaID)
	p.field("Transaction", c.Transaction)
	p.num("ReadTimeoutMillis", c.ReadTimeoutMillis)
	p.num("ProcessTimeoutMillis", c.ProcessTimeoutMillis)
	p.num("SessionTimeoutMillis", c.SessionTimeoutMillis)
	p.num("MaxPollIntervalMillis", c.MaxPollIntervalMillis)
	p.num("ProcessDelayMillis", c.ProcessDelayMillis)
	p.str("SaslUsername", c.SaslUsername)
	p.secret("SaslPassword", c.SaslPassword)
	if c.DeadLetterTopicConfig == nil {
		p.nilField("DeadLetterTopicConfig")
	} else {
		p.field("DeadLetterTopicConfig", *c.DeadLetterTopicConfig)
	}
	p.field("GroupProtocol", c.GroupProtocol)
	return p.String()
}

// String prints the fields with SaslPassword and secret AdditionalProps as "***".
func (c ConsumerTopicConfig) String() string { return c.print(false) }

// GoString is %#v: the fields in Go syntax with secrets as "***".
func (c ConsumerTopicConfig) GoString() string { return c.print(true) }

// Format makes every fmt verb print the redacted form.
func (c ConsumerTopicConfig) Format(f fmt.State, verb rune) {
	formatRedacted(f, verb, c.String, c.GoString)
}

func (c ProducerTopicConfig) print(goSyntax bool) string {
	p := newStructPrinter("ProducerTopicConfig", goSyntax)
	p.field("ClientID", c.ClientID)
	p.field("Topic", c.Topic)
	p.field("BootstrapServers", c.BootstrapServers)
	p.num("DeliveryTimeoutMs", c.DeliveryTimeoutMs)
	p.field("AdditionalProps", redactProps(c.AdditionalProps))
	p.field("Formatter", c.Formatter)
	p.field("SchemaRegistry", c.SchemaRegistry)
	p.field("SchemaID", c.SchemaID)
	p.field("Transaction", c.Transaction)
	p.str("RequestRequiredAcks", c.RequestRequiredAcks)
	p.boolean("EnableIdempotence", c.EnableIdempotence)
	p.field("LingerMillis", c.LingerMillis)
	p.boolean("NagleDisable", c.NagleDisable)
	p.str("SaslUsername", c.SaslUsername)
	p.secret("SaslPassword", c.SaslPassword)
	return p.String()
}

// String prints the fields with SaslPassword and secret AdditionalProps as "***".
func (c ProducerTopicConfig) String() string { return c.print(false) }

// GoString is %#v: the fields in Go syntax with secrets as "***".
func (c ProducerTopicConfig) GoString() string { return c.print(true) }

// Format makes every fmt verb print the redacted form.
func (c ProducerTopicConfig) Format(f fmt.State, verb rune) {
	formatRedacted(f, verb, c.String, c.GoString)
}
