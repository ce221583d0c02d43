// Package faultstore wraps a store.Database to give the real engine
// underneath the faults of a slow or flaky MongoDB, for tests: a write
// the server applied whose answer never came back, an answer that came
// after the client's deadline, a write that landed after the client gave
// up on it. Such faults are what a client sees as timeouts, and the
// caller cannot tell them from a write that never happened. The pipeline's
// tests (scripts/pipeline) and any other suite run retrigger on the
// wrapper to check that it survives them without misreporting anything.
//
// The wrapped engine stays the real thing: every operation it is asked is
// executed by it, with its semantics; the wrapper only decides when the
// operation runs and what the caller is told.
package faultstore
