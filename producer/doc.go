// Package producer is retrigger's outbox relay: it watches the events
// collection with a change stream and publishes every change that needs work
// to JetStream (new and failed events to the EVENTS stream, errored ones to
// the DLQ), saving the change stream's resume token only after JetStream
// acknowledged everything before it. Its sweeper republishes events that
// should be moving but are not, and alone drives the pipeline on servers
// without change streams. It is the only component that publishes to NATS.
package producer
