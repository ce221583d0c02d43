package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// record is an event document as the check reads it, from events or
// errors, with the driver and nothing of retrigger's own code: what the
// stock commands wrote must say by itself what happened.
type record struct {
	ID        bson.ObjectID `bson:"_id"`
	State     int64         `bson:"state"`
	Attempts  int64         `bson:"attempts"`
	Version   int64         `bson:"version"`
	Retrigger struct {
		Lease *struct {
			Owner string    `bson:"owner"`
			Token int64     `bson:"token"`
			Until time.Time `bson:"until"`
		} `bson:"lease"`
		Crashes int64   `bson:"crashes"`
		Reason  string  `bson:"reason"`
		History []entry `bson:"history"`
	} `bson:"retrigger"`
}

// entry is one entry of an event's history.
type entry struct {
	At      time.Time `bson:"at"`
	TookMs  int64     `bson:"tookMs"`
	Outcome string    `bson:"outcome"`
	Error   string    `bson:"error"`
	Replica string    `bson:"replica"`
	Attempt int64     `bson:"attempt"`
}

// Outcomes of a handler run in the history; the other entries ("crashed",
// "archived", operators' actions) record decisions, not runs.
const (
	outcomeSuccess = "success"
	outcomeFailed  = "failed"
	outcomeError   = "error"
)

// policy is what the consumers were told; the check holds them to it.
type policy struct {
	maxAttempts int64 // -retry-max-attempts
	maxCrashes  int64 // -max-crashes
	history     int   // entries kept in a history (-history): a full one may have lost its oldest runs
}

// orphan is a lease seen held by a consumer replica after that replica was
// killed: a run the kill interrupted, which a later claim counts as a
// crash when it takes the lease over.
type orphan struct {
	Owner    string
	Token    int64
	KilledAt time.Time // when the check killed the owner
	Seen     time.Time // when the check first saw the lease after that
}

// kill is one kill -9 of a component.
type kill struct {
	At        time.Time
	Component string
	Replica   string // the consumer replica name of the killed process
	PID       int
}

// input is everything the final check looks at.
type input struct {
	inserted []bson.ObjectID
	events   map[bson.ObjectID]record // the run's events in events
	errors   map[bson.ObjectID]record // the run's events in errors
	pruned   map[bson.ObjectID]record // successes the check verified and deleted during the run
	orphans  map[bson.ObjectID][]orphan
	policy   policy
}

// violation is one broken promise, about one event.
type violation struct {
	Kind string // lost, not terminal, in both, leased, double-counted, runs, crashed without a kill, ...
	ID   bson.ObjectID
	What string
}

func (v violation) String() string { return fmt.Sprintf("%s: %s: %s", v.Kind, v.ID.Hex(), v.What) }

// Violation kinds, in the order the report lists them.
const (
	kindLost         = "lost"
	kindNotTerminal  = "not terminal"
	kindBoth         = "in events and in errors"
	kindCameBack     = "back after it was verified"
	kindLeased       = "left leased"
	kindDoubleCount  = "double-counted"
	kindRuns         = "runs out of order"
	kindPolicy       = "against the retry policy"
	kindFalseCrash   = "crashed without a kill"
	kindWrongArchive = "archived for an unexpected reason"
)

// outcomes counts where the events ended.
type outcomes struct {
	Succeeded, FirstTime, Archived int
	ByReason                       map[string]int
	Unverifiable                   int // histories too full to count their runs
}

// check holds every event of the run to the promises: it ended in exactly
// one terminal place, none is lost or left leased, its attempts are its
// failed runs, and an archive as crashed has a kill behind each of its
// unfinished runs.
func check(in input) (outcomes, []violation) {
	out := outcomes{ByReason: map[string]int{}}
	var vs []violation
	for _, id := range in.inserted {
		ev, inEvents := in.events[id]
		arch, inErrors := in.errors[id]
		pruned, wasPruned := in.pruned[id]
		switch {
		case wasPruned && (inEvents || inErrors):
			vs = append(vs, violation{kindCameBack, id, fmt.Sprintf("verified succeeded and deleted by the check, then found in events %v, in errors %v", inEvents, inErrors)})
		case wasPruned:
			out.Succeeded++
			if pruned.Attempts == 0 {
				out.FirstTime++
			}
		case inEvents && inErrors:
			vs = append(vs, violation{kindBoth, id, fmt.Sprintf("state %d in events, reason %q in errors", ev.State, arch.Retrigger.Reason)})
		case !inEvents && !inErrors:
			vs = append(vs, violation{kindLost, id, "in neither events nor errors"})
		case inEvents && ev.State != 1:
			vs = append(vs, violation{kindNotTerminal, id, fmt.Sprintf("state %d, %d attempts, %s", ev.State, ev.Attempts, describeLease(ev))})
		case inEvents:
			out.Succeeded++
			if ev.Attempts == 0 {
				out.FirstTime++
			}
			vs = append(vs, checkSucceeded(ev, in.policy, &out)...)
		default:
			out.Archived++
			out.ByReason[arch.Retrigger.Reason]++
			vs = append(vs, checkArchived(arch, in.policy, in.orphans[id], &out)...)
		}
	}
	sort.SliceStable(vs, func(i, j int) bool { return kindOrder(vs[i].Kind) < kindOrder(vs[j].Kind) })
	return out, vs
}

func kindOrder(k string) int {
	for i, o := range []string{kindLost, kindNotTerminal, kindBoth, kindCameBack, kindLeased, kindDoubleCount, kindRuns, kindPolicy, kindFalseCrash, kindWrongArchive} {
		if k == o {
			return i
		}
	}
	return 99
}

// checkSucceeded checks an event in state success.
func checkSucceeded(r record, p policy, out *outcomes) []violation {
	vs := common(r, p, out)
	runs := handlerRuns(r)
	if n := count(runs, outcomeSuccess); n != 1 && !full(r, p) {
		vs = append(vs, violation{kindDoubleCount, r.ID, fmt.Sprintf("succeeded with %d successful runs in its history: %s", n, describeRuns(r))})
	}
	if len(runs) > 0 && runs[len(runs)-1].Outcome != outcomeSuccess {
		vs = append(vs, violation{kindRuns, r.ID, "succeeded, but its last run did not: " + describeRuns(r)})
	}
	if r.Attempts >= p.maxAttempts {
		vs = append(vs, violation{kindPolicy, r.ID, fmt.Sprintf("succeeded after %d failed runs, the policy allows %d", r.Attempts, p.maxAttempts-1)})
	}
	return vs
}

// checkArchived checks an event in errors.
func checkArchived(r record, p policy, orphans []orphan, out *outcomes) []violation {
	vs := common(r, p, out)
	if n := count(handlerRuns(r), outcomeSuccess); n > 0 {
		vs = append(vs, violation{kindDoubleCount, r.ID, fmt.Sprintf("archived with %d successful runs in its history: %s", n, describeRuns(r))})
	}
	switch r.Retrigger.Reason {
	case "exhausted":
		if r.Attempts != p.maxAttempts {
			vs = append(vs, violation{kindPolicy, r.ID, fmt.Sprintf("archived as exhausted after %d failed runs, the policy allows %d", r.Attempts, p.maxAttempts)})
		}
	case "crashed":
		// Each unfinished run it counted must have been a run of a
		// consumer the check killed: a lease seen held by that consumer
		// after its kill. A lease of a live consumer that was never used
		// to finish a run (a claim whose answer was lost) is not a crash.
		tokens := map[int64]bool{}
		for _, o := range orphans {
			tokens[o.Token] = true
		}
		if int64(len(tokens)) < p.maxCrashes {
			vs = append(vs, violation{kindFalseCrash, r.ID, fmt.Sprintf("archived as crashed (%d runs that never finished), but only %d of its runs were interrupted by a kill%s; history: %s",
				p.maxCrashes, len(tokens), describeOrphans(orphans), describeRuns(r))})
		}
	default:
		// The demo handler's failures are retryable, nobody edits the
		// events and every _id fits: only exhaustion and crashes archive.
		vs = append(vs, violation{kindWrongArchive, r.ID, fmt.Sprintf("reason %q after %d attempts: %s", r.Retrigger.Reason, r.Attempts, describeRuns(r))})
	}
	return vs
}

// common checks what holds for every terminal event: no lease, attempts
// equal to the failed runs in the history, and runs numbered 1, 2, 3...
func common(r record, p policy, out *outcomes) []violation {
	var vs []violation
	if r.Retrigger.Lease != nil {
		where := "succeeded"
		if r.Retrigger.Reason != "" {
			where = "archived as " + r.Retrigger.Reason
		}
		vs = append(vs, violation{kindLeased, r.ID, fmt.Sprintf("%s, %s: %s", where, describeLease(r), describeRuns(r))})
	}
	if full(r, p) {
		out.Unverifiable++
		return vs
	}
	runs := handlerRuns(r)
	if failed := count(runs, outcomeFailed) + count(runs, outcomeError); int64(failed) != r.Attempts {
		vs = append(vs, violation{kindDoubleCount, r.ID, fmt.Sprintf("attempts %d, but %d failed runs in its history: %s", r.Attempts, failed, describeRuns(r))})
	}
	for i, h := range runs {
		if h.Attempt != int64(i+1) {
			vs = append(vs, violation{kindRuns, r.ID, fmt.Sprintf("run %d of its history is numbered %d: %s", i+1, h.Attempt, describeRuns(r))})
			break
		}
	}
	return vs
}

// full reports whether the history may have dropped its oldest entries.
func full(r record, p policy) bool { return p.history > 0 && len(r.Retrigger.History) >= p.history }

func handlerRuns(r record) []entry {
	var runs []entry
	for _, h := range r.Retrigger.History {
		switch h.Outcome {
		case outcomeSuccess, outcomeFailed, outcomeError:
			runs = append(runs, h)
		}
	}
	return runs
}

func count(runs []entry, outcome string) int {
	n := 0
	for _, h := range runs {
		if h.Outcome == outcome {
			n++
		}
	}
	return n
}

func describeLease(r record) string {
	l := r.Retrigger.Lease
	if l == nil {
		return "no lease"
	}
	return fmt.Sprintf("leased by %s until %s", l.Owner, l.Until.Format("15:04:05.000"))
}

func describeRuns(r record) string {
	if len(r.Retrigger.History) == 0 {
		return "(empty)"
	}
	parts := make([]string, 0, len(r.Retrigger.History))
	for _, h := range r.Retrigger.History {
		s := fmt.Sprintf("%s %s", h.At.Format("15:04:05.000"), h.Outcome)
		if h.Attempt > 0 {
			s += fmt.Sprintf(" #%d", h.Attempt)
		}
		if h.Replica != "" {
			s += " by " + h.Replica
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func describeOrphans(os []orphan) string {
	if len(os) == 0 {
		return ""
	}
	parts := make([]string, 0, len(os))
	for _, o := range os {
		parts = append(parts, fmt.Sprintf("%s killed %s", o.Owner, o.KilledAt.Format("15:04:05.000")))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
