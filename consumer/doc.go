// Package consumer runs retrigger's handlers. A Worker is one stateless
// replica of the consumer: it pulls events from the shared durable JetStream
// consumer, runs the handler registered for each event's type, and writes
// the state transition to MongoDB as a conditional update on
// {_id, version, state}, so duplicate and stale messages never count twice.
// Any number of replicas may run. An Archiver moves events whose retries are
// exhausted from the dead-letter stream into the errors collection.
//
// Neither publishes to NATS: the producer relays every state change.
package consumer
