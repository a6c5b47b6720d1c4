// Package formattest holds the test schemas and types that the tests of the formatters
// (internal/format) and of the root package's formatter paths share. Only tests import it.
package formattest

// Avro test schemas: PersonV2Schema is PersonV1Schema with a field added with a default, a
// compatible evolution in both directions; PersonJSONSchema is the JSON Schema of PersonV1.
const (
	PersonV1Schema = `{"type":"record","name":"Person","namespace":"zkafka.test","fields":[
		{"name":"name","type":"string"},
		{"name":"age","type":"int"}]}`
	PersonV2Schema = `{"type":"record","name":"Person","namespace":"zkafka.test","fields":[
		{"name":"name","type":"string"},
		{"name":"age","type":"int"},
		{"name":"email","type":"string","default":"none"}]}`
	PersonJSONSchema = `{"$schema":"http://json-schema.org/draft-07/schema#","title":"Person","type":"object",
		"properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"]}`
)

// PersonV1 is a value of PersonV1Schema.
type PersonV1 struct {
	Name string `avro:"name" json:"name"`
	Age  int    `avro:"age" json:"age"`
}

// PersonV2 is a value of PersonV2Schema.
type PersonV2 struct {
	Name  string `avro:"name" json:"name"`
	Age   int    `avro:"age" json:"age"`
	Email string `avro:"email" json:"email"`
}
