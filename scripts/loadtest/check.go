package loadtest

import (
	"fmt"
	"slices"

	"github.com/retrigger/retrigger/shared/event"
)

// Kinds of invariant violation.
const (
	// KindLost: an inserted event is in no terminal place.
	KindLost = "lost"
	// KindDoubleCounted: an event's attempts differ from the failures its
	// handler recorded, or it reached a terminal state more than once, or
	// it is in more than one place.
	KindDoubleCounted = "double-counted"
	// KindNonTerminal: an event is still new, failed or error in events.
	KindNonTerminal = "non-terminal"
	// KindUnobserved: the storage holds a terminal event whose transition
	// the run never saw: the measurement itself cannot be trusted.
	KindUnobserved = "unobserved"
)

// maxListed bounds the violations a report lists one by one.
const maxListed = 20

// Observation is what the run saw of one event it inserted.
type Observation struct {
	ID       string
	Inserted bool  // its insert was sent
	Runs     int   // handler executions
	Failures int64 // handler executions that failed
	// Successes and Archives count the terminal transitions observed:
	// success written by a worker, and the archiver's move into errors.
	Successes, Archives int
	// TerminalAttempts is the attempts count the first terminal
	// transition wrote (for a success: the attempts of the version the
	// conditional update matched, which the update keeps).
	TerminalAttempts int64
	// Probes counts the failed runs that spent no attempt: probes of an
	// open breaker that found the partner still down (their history entry
	// reads "probe"). They are among Failures.
	Probes int64
}

// Stored is where an event is after the run.
type Stored struct {
	InEvents       bool
	State          event.State // in events
	Attempts       int64       // in events
	InErrors       bool
	ErrorsAttempts int64
}

// Checker checks the invariants of docs/DESIGN.md on a finished run:
//
//   - none lost: every inserted event reached exactly one terminal state,
//     and is where that state says (a succeeded one in events with state
//     1, or deleted by retention; an archived one in errors and not in
//     events);
//   - none double-counted: its attempts, in the storage and in the
//     terminal transition, equal the failures its handler recorded, but
//     its failed probes (a probe of an open breaker that found the
//     partner down spends no attempt), whose total must be the breakers';
//   - none left non-terminal in events.
//
// An event flow control parked (its lease given back while its type was
// held, or its key busy) is no violation: it ran later, or it is reported
// non-terminal.
//
// With retention on, a succeeded event may be gone from events by design,
// so its attempts are checked on the success transition instead: the
// worker writes success with a conditional update on the version it read,
// and success does not change attempts, so the transition's attempts are
// the stored ones. "Not lost" is then checked by count: the succeeded
// events missing from events must be exactly the ones retention deleted
// (the producer's counter, stable once it is stopped). Retention deletes
// only succeeded events, and every success was observed, so an event lost
// any other way makes the counts differ.
type Checker struct {
	// Retired is how many succeeded events retention deleted during the
	// run, when RetiredKnown (embedded mode). In external mode the
	// deployment's producer may delete succeeded events unseen: those are
	// counted as unverified, not as violations.
	Retired      int64
	RetiredKnown bool
	// ArchivesObserved says the archiver's transitions reach the run
	// (embedded mode). Without them (external mode, where the archiver runs
	// elsewhere) an errors document is the event's archive.
	ArchivesObserved bool
	// FailedProbes is how many probes the workers' breakers judged failed
	// (their metrics), when FailedProbesKnown: the events' failed runs that
	// spent no attempt must add up to it, so an attempt that went
	// uncounted cannot pass for a probe.
	FailedProbes      int64
	FailedProbesKnown bool
}

// Violation is one broken invariant.
type Violation struct {
	Kind   string `json:"kind"`
	ID     string `json:"id,omitempty"` // empty for a count over many events
	Detail string `json:"detail"`
}

func (v Violation) String() string {
	if v.ID == "" {
		return v.Kind + ": " + v.Detail
	}
	return fmt.Sprintf("%s: event %s: %s", v.Kind, v.ID, v.Detail)
}

// Report is the verdict of Check, with the outcome counts it found.
type Report struct {
	OK                 bool `json:"ok"`
	Lost               int  `json:"lost"`
	DoubleCounted      int  `json:"double_counted"`
	NonTerminal        int  `json:"non_terminal"`
	Unobserved         int  `json:"unobserved"`
	Inserted           int  `json:"inserted"`
	Succeeded          int  `json:"succeeded"`
	SucceededFirstTime int  `json:"succeeded_first_time"`
	Archived           int  `json:"archived"`
	// Retired: succeeded events missing from events, accounted for by
	// retention. RetiredUnverified: the same in external mode, where
	// retention is not counted.
	Retired           int `json:"retired"`
	RetiredUnverified int `json:"retired_unverified"`
	// DuplicateRuns counts handler runs beyond one per attempt: allowed
	// by at-least-once delivery, expected only after a crash or an expired
	// ack deadline.
	DuplicateRuns int `json:"duplicate_runs"`
	// Probes counts the failed runs that spent no attempt (failed probes
	// of an open breaker), legitimately.
	Probes int64 `json:"probes,omitempty"`
	// Violations lists the first few violations; Count* hold the totals.
	Violations []Violation `json:"violations"`
}

func (r *Report) add(v Violation) {
	switch v.Kind {
	case KindLost:
		r.Lost++
	case KindDoubleCounted:
		r.DoubleCounted++
	case KindNonTerminal:
		r.NonTerminal++
	case KindUnobserved:
		r.Unobserved++
	}
	if len(r.Violations) < maxListed {
		r.Violations = append(r.Violations, v)
	}
}

// Check checks the observations of a run against stored, the state of the
// storage after the run, keyed by event id (documents of this run only).
func (c Checker) Check(obs []Observation, stored map[string]Stored) Report {
	r := Report{Violations: []Violation{}}
	missing := 0 // succeeded, and gone from events
	seen := make(map[string]bool, len(obs))
	for _, o := range obs {
		st, found := stored[o.ID]
		if !o.Inserted && !found && o.Runs == 0 && o.Successes+o.Archives == 0 {
			continue // never inserted: not part of the run
		}
		seen[o.ID] = true
		r.Inserted++
		bad := func(kind, format string, args ...any) {
			r.add(Violation{Kind: kind, ID: o.ID, Detail: fmt.Sprintf(format, args...)})
		}
		archives := o.Archives
		attemptsSeen := c.ArchivesObserved || o.Successes > 0
		if !c.ArchivesObserved && st.InErrors && archives == 0 {
			archives = 1 // external: the errors document is the archive
		}
		expectedRuns := o.Failures
		// The attempts the event spent: its failures, but the probes.
		spent := o.Failures - o.Probes
		r.Probes += o.Probes
		recorded := fmt.Sprintf("its handler recorded %d failures", o.Failures)
		if o.Probes > 0 {
			recorded += fmt.Sprintf(", %d of them failed probes that spend none", o.Probes)
		}
		switch terminal := o.Successes + archives; {
		case terminal == 0:
			switch {
			case st.InEvents && st.State == event.StateSuccess:
				bad(KindUnobserved, "succeeded in events, but no success transition was observed")
			case st.InEvents:
				bad(KindNonTerminal, "left in state %s with %d attempts", st.State, st.Attempts)
			case st.InErrors:
				bad(KindUnobserved, "in errors, but no archive transition was observed")
			default:
				bad(KindLost, "inserted, never reached a terminal state, and in neither events nor errors")
			}
		case terminal > 1:
			bad(KindDoubleCounted, "reached a terminal state %d times (%d successes, %d archives)", terminal, o.Successes, archives)
		case o.Successes == 1:
			r.Succeeded++
			expectedRuns++
			if o.Failures == 0 {
				r.SucceededFirstTime++
			}
			if !st.InEvents && !st.InErrors {
				missing++ // retired, or lost: told apart by count below
			}
			switch {
			case st.InErrors:
				bad(KindDoubleCounted, "succeeded, yet also in errors")
			case o.TerminalAttempts != spent:
				bad(KindDoubleCounted, "succeeded with %d attempts, but %s", o.TerminalAttempts, recorded)
			case st.InEvents && st.State != event.StateSuccess:
				bad(KindNonTerminal, "succeeded, then found in state %s", st.State)
			case st.InEvents && st.Attempts != spent:
				bad(KindDoubleCounted, "%d attempts in events, but %s", st.Attempts, recorded)
			}
		default: // archived
			r.Archived++
			switch {
			case st.InEvents:
				bad(KindDoubleCounted, "archived, yet still in events in state %s", st.State)
			case !st.InErrors:
				bad(KindLost, "archived, but not in errors")
			case st.ErrorsAttempts != spent:
				bad(KindDoubleCounted, "%d attempts in errors, but %s", st.ErrorsAttempts, recorded)
			case attemptsSeen && o.TerminalAttempts != spent:
				bad(KindDoubleCounted, "archived with %d attempts, but %s", o.TerminalAttempts, recorded)
			}
		}
		if int64(o.Runs) > expectedRuns {
			r.DuplicateRuns += int(int64(o.Runs) - expectedRuns)
		}
	}

	switch {
	case !c.RetiredKnown:
		r.RetiredUnverified = missing
	case int64(missing) == c.Retired:
		r.Retired = missing
	case int64(missing) > c.Retired:
		r.add(Violation{Kind: KindLost, Detail: fmt.Sprintf("%d succeeded events are gone from events, but retention deleted only %d", missing, c.Retired)})
	default:
		r.add(Violation{Kind: KindDoubleCounted, Detail: fmt.Sprintf("retention deleted %d succeeded events, but only %d of this run's are gone from events", c.Retired, missing)})
	}

	if c.FailedProbesKnown && r.Probes != c.FailedProbes {
		r.add(Violation{Kind: KindDoubleCounted, Detail: fmt.Sprintf("%d failed runs spent no attempt, but the breakers judged %d probes failed: an attempt went uncounted, or a probe counted one", r.Probes, c.FailedProbes)})
	}

	var strays []string
	for id := range stored {
		if !seen[id] {
			strays = append(strays, id)
		}
	}
	slices.Sort(strays)
	for _, id := range strays {
		r.add(Violation{Kind: KindDoubleCounted, ID: id, Detail: "stored, but not inserted by this run"})
	}
	r.OK = r.Lost+r.DoubleCounted+r.NonTerminal+r.Unobserved == 0
	return r
}
