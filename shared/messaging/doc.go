// Package messaging defines retrigger's JetStream side: the EVENTS and DLQ
// streams and their subjects, the durable consumers, the message format (the
// event document as relaxed extended JSON, readable with `nats stream view`)
// and its headers, and the one place that classifies NATS errors.
package messaging
