// Package filelock keeps a second process off data that one process owns:
// Acquire takes an exclusive advisory lock (flock) on a lock file and writes
// the owner into it (its pid, command line and start time), so that a second
// Acquire fails at once with ErrLocked and an error that names the owner. The
// kernel releases the lock when the owner exits, however it exits (a kill -9
// included), so a lock file left behind never blocks anyone.
//
// The embedded storage engine locks its data file with it, and the local
// run its data directory.
package filelock
