// Package messaging defines retrigger's JetStream side: the EVENTS and DLQ
// streams and their subjects, the durable consumers (one per event type on
// EVENTS, one archiver consumer on the DLQ), the messages, and the one
// place that classifies NATS errors (errors.go).
//
// A message refers to an event document: its headers carry the event's _id
// (lossless, whatever its BSON type) and version, and its Nats-Msg-Id
// names what it was derived from. Consumers read the event itself from
// MongoDB, which decides. The body renders the document as relaxed
// extended JSON for people using `nats stream view`; nothing decodes it.
package messaging
