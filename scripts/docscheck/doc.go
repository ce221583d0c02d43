// Package docscheck holds tests that keep the documents in agreement with
// themselves and with the code: the durations and columns they cite, the
// files the scripts write, the counters the tools print. It has no code of
// its own.
package docscheck
