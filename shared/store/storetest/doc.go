// Package storetest is the conformance suite of the storage port: one set
// of behaviours that every backend of store.Database must show, run by each
// backend's tests with Run. It exercises the operations retrigger's domain
// code relies on, with the query shapes that code writes (conditional
// updates on fields that may be missing, $inc, sort and limit), and change
// streams: order, post-update documents, Match, resume tokens and the loss
// of history.
package storetest
