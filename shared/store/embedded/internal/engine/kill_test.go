package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/256dpi/lungo/bsonkit"
	"github.com/stretchr/testify/require"
)

// The kill test: a child process writes through the engine and reports
// each write it got an answer for (an ack) on its standard output; the
// parent kills it with SIGKILL, then opens a copy of what it left on disk
// and checks that every acknowledged write is there, that nothing
// half-done is, and that the file opens. The instant of each kill is either
// random (after a random number of acks, the child writing meanwhile) or
// one of the moments that matter, which the child reaches through the
// engine's test hook and waits at to be killed: a write applied but not yet
// appended ("commit"), a journal append half written ("append-torn"),
// written but not synced ("append-unsynced"), synced but not yet
// acknowledged ("append-synced"), a new journal started for a snapshot
// ("rotate"), a snapshot half written ("snapshot-partial"), synced but not
// renamed into place ("snapshot-synced"), renamed but the old journals not
// yet removed ("snapshot-renamed"). The child snapshots every 16 KiB of
// journal, so snapshots are frequent.
//
// Every other child runs with a sync interval (Options.SyncInterval): its
// acknowledged writes must survive a kill too.
//
// RETRIGGER_TEST_KILLS sets the number of kills (default 200, about 30 s on
// two cores); RETRIGGER_TEST_KILLS=2000 is the longer run.

const (
	killChildEnv = "ENGINE_TEST_KILL_CHILD" // the child's data file
	killPointEnv = "ENGINE_TEST_KILL_POINT"
	killAtEnv    = "ENGINE_TEST_KILL_AT"
	killRunEnv   = "ENGINE_TEST_KILL_RUN"
	killSyncEnv  = "ENGINE_TEST_KILL_SYNC" // the child's Options.SyncInterval
)

var killPoints = []string{"commit", "append-torn", "append-unsynced", "append-synced", "rotate", "snapshot-partial", "snapshot-synced", "snapshot-renamed"}

// killChild is the child process: it writes until it is killed.
func killChild() {
	var mu sync.Mutex
	say := func(format string, args ...any) {
		line := fmt.Sprintf(format+"\n", args...)
		mu.Lock()
		defer mu.Unlock()
		_, _ = os.Stdout.WriteString(line) // one write: a kill does not split it
	}
	point := os.Getenv(killPointEnv)
	at, _ := strconv.ParseInt(os.Getenv(killAtEnv), 10, 64)
	var hits atomic.Int64
	opts := testOptions(os.Getenv(killChildEnv))
	// A short history and small journals: a snapshot every few dozen
	// writes.
	opts.OplogMinSize, opts.OplogMaxSize, opts.OplogMinAge, opts.OplogMaxAge = 10, 50, 0, 0
	opts.SnapshotBytes = 16 << 10
	opts.SyncInterval, _ = time.ParseDuration(os.Getenv(killSyncEnv))
	opts.hook = func(p string) {
		if p == point && hits.Add(1) == at {
			say("paused %s", p)
			time.Sleep(time.Hour) // until the kill
		}
	}
	e, _, err := Open(opts)
	if err != nil {
		say("error opening: %v", err)
		os.Exit(1)
	}
	say("ready")
	run := os.Getenv(killRunEnv)
	for g := range 4 {
		go killWriter(e, fmt.Sprintf("%s-%d", run, g), say)
	}
	time.Sleep(time.Hour)
}

// killWriter inserts, updates and deletes documents of its own, and
// inserts and deletes pairs of documents in two collections, each pair in
// one Write, saying what it tries before it tries it and what was
// acknowledged once it was.
func killWriter(e *Engine, prefix string, say func(string, ...any)) {
	pad := strings.Repeat("x", 200)
	var live, pairs []string
	write := func(fn func(*Txn) error) {
		if err := e.Write(fn); err != nil {
			say("error %v", err)
			os.Exit(1)
		}
	}
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		switch i % 10 {
		case 4:
			say("try-txn %s", id)
			write(func(txn *Txn) error {
				if _, err := txn.Insert(nsA, bsonkit.List{d("_id", id+"a", "v", int32(0))}, true); err != nil {
					return err
				}
				_, err := txn.Insert(nsB, bsonkit.List{d("_id", id+"b", "pad", pad)}, true)
				return err
			})
			say("txn %s", id)
			pairs = append(pairs, id)
		case 8:
			if len(pairs) == 0 {
				continue
			}
			pair := pairs[0]
			pairs = pairs[1:]
			say("try-tdel %s", pair)
			write(func(txn *Txn) error {
				if _, err := txn.Delete(nsA, d("_id", pair+"a"), 1); err != nil {
					return err
				}
				_, err := txn.Delete(nsB, d("_id", pair+"b"), 1)
				return err
			})
			say("tdel %s", pair)
		case 3, 7, 9:
			if len(live) < 3 {
				continue
			}
			victim := live[0]
			live = live[1:]
			say("try-del %s", victim)
			write(func(txn *Txn) error {
				_, err := txn.Delete(nsA, d("_id", victim), 1)
				return err
			})
			say("del %s", victim)
		case 5, 6:
			if len(live) == 0 {
				continue
			}
			target := live[rand.IntN(len(live))]
			say("try-upd %s", target)
			var v any
			write(func(txn *Txn) error {
				res, err := txn.Update(nsA, d("_id", target), d("$inc", d("v", int32(1))), 1, false)
				if err == nil && len(res.Modified) == 1 {
					v = bsonkit.Get(res.Modified[0], "v")
				}
				return err
			})
			say("upd %s %v", target, v)
		default:
			say("try-ins %s", id)
			write(func(txn *Txn) error {
				_, err := txn.Insert(nsA, bsonkit.List{d("_id", id, "v", int32(0), "pad", pad)}, true)
				return err
			})
			say("ins %s", id)
			live = append(live, id)
		}
	}
}

// expected is what the parent knows of one document.
type expected struct {
	ns      NS
	exists  int // 1: must exist, -1: must not, 0: either (a write in doubt)
	v       int32
	pending bool // an update in doubt: v or v+1
	pair    string
}

type killModel map[string]*expected

func (m killModel) apply(line string) error {
	verb, rest, _ := strings.Cut(line, " ")
	switch verb {
	case "try-ins":
		m[rest] = &expected{ns: nsA}
	case "ins":
		m[rest].exists = 1
	case "try-upd":
		m[rest].pending = true
	case "upd":
		id, v, _ := strings.Cut(rest, " ")
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return fmt.Errorf("%q: %w", line, err)
		}
		m[id].v, m[id].pending = int32(n), false
	case "try-del":
		m[rest].exists = 0
	case "del":
		m[rest].exists = -1
	case "try-txn":
		m[rest+"a"] = &expected{ns: nsA, pair: rest + "b"}
		m[rest+"b"] = &expected{ns: nsB, pair: rest + "a"}
	case "txn":
		m[rest+"a"].exists, m[rest+"b"].exists = 1, 1
	case "try-tdel":
		m[rest+"a"].exists, m[rest+"b"].exists = 0, 0
	case "tdel":
		m[rest+"a"].exists, m[rest+"b"].exists = -1, -1
	case "ready", "paused":
	case "error":
		return fmt.Errorf("the child failed: %s", rest)
	default:
		return fmt.Errorf("unexpected line %q", line)
	}
	return nil
}

// check compares the recovered state with what was acknowledged, then
// makes what it found the expectation: a write in doubt that was recovered
// must stay, one that was not must stay away.
func (m killModel) check(e *Engine) error {
	v, _, err := e.Current()
	if err != nil {
		return err
	}
	found := map[string]*expected{}
	for _, ns := range []NS{nsA, nsB} {
		docs, err := v.Find(ns, nil, nil, 0, 0)
		if err != nil {
			return err
		}
		for _, doc := range docs {
			id, _ := bsonkit.Get(doc, "_id").(string)
			n, _ := bsonkit.Get(doc, "v").(int32)
			found[id] = &expected{ns: ns, v: n}
		}
	}
	var problems []string
	for id, f := range found {
		if want, ok := m[id]; !ok || want.ns != f.ns {
			problems = append(problems, fmt.Sprintf("%s in %s was never written there", id, f.ns))
		}
	}
	for id, want := range m {
		got, has := found[id]
		switch {
		case want.exists == 1 && !has:
			problems = append(problems, fmt.Sprintf("%s: an acknowledged write is lost", id))
		case want.exists == -1 && has:
			problems = append(problems, fmt.Sprintf("%s: an acknowledged delete is undone", id))
		case has && want.ns == nsA && got.v != want.v && !(want.pending && got.v == want.v+1):
			problems = append(problems, fmt.Sprintf("%s: v is %d, acknowledged %d (one more in doubt: %v)", id, got.v, want.v, want.pending))
		}
		if want.pair != "" {
			if _, pairHas := found[want.pair]; pairHas != has {
				problems = append(problems, fmt.Sprintf("%s and %s were one write, and only one is there", id, want.pair))
			}
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("%d problems: %s", len(problems), strings.Join(problems[:min(len(problems), 10)], "; "))
	}
	for id, want := range m {
		if got, has := found[id]; has {
			want.exists, want.v, want.pending = 1, got.v, false
		} else {
			want.exists = -1
		}
	}
	return nil
}

func TestKillAtAnyInstant(t *testing.T) {
	kills := 200
	if s := os.Getenv("RETRIGGER_TEST_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "RETRIGGER_TEST_KILLS")
		kills = n
	}
	var (
		dir    string
		model  killModel
		landed = map[string]int{}
		start  = time.Now()
	)
	for k := range kills {
		if k%25 == 0 { // a fresh store now and then keeps each open quick
			dir, model = t.TempDir(), killModel{}
		}
		point, at := "", int64(0)
		if n := rand.IntN(len(killPoints) + 2); n < len(killPoints) {
			point = killPoints[n]
			at = 1 + rand.Int64N(3)
			if point == "commit" || strings.HasPrefix(point, "append") {
				at = 1 + rand.Int64N(40)
			}
		}
		// Every other child syncs its journal every few milliseconds
		// instead of on every append: its acknowledged writes must survive
		// the kill as well (the operating system has them).
		interval := time.Duration(0)
		if k%2 == 1 {
			interval = time.Duration(1+rand.IntN(20)) * time.Millisecond
		}
		how := killOnce(t, filepath.Join(dir, "db"), k, point, at, interval, model)
		landed[how]++

		copied := copyDir(t, dir)
		e, rec, err := Open(testOptions(filepath.Join(copied, "db")))
		require.NoError(t, err, "kill %d (%s): the store does not open", k, how)
		err = model.check(e)
		require.NoError(t, e.Close())
		require.NoError(t, err, "kill %d (%s), after %s", k, how, rec)
		require.NoError(t, os.RemoveAll(copied))
	}
	t.Logf("%d kills in %s: %v", kills, time.Since(start).Round(time.Millisecond), landed)
	if kills >= 200 {
		for _, p := range killPoints {
			require.NotZero(t, landed[p], "no kill landed at %s: %v", p, landed)
		}
	}
}

// killOnce runs a child on path until the kill, feeding its lines to the
// model, and returns where the kill landed.
func killOnce(t *testing.T, path string, k int, point string, at int64, interval time.Duration, model killModel) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killSyncEnv+"="+interval.String(),
		killChildEnv+"="+path, killPointEnv+"="+point,
		killAtEnv+"="+strconv.FormatInt(at, 10), killRunEnv+"="+strconv.Itoa(k))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	acks, killAfter := 0, 1+rand.IntN(200)
	how := "random"
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
wait:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("kill %d: the child exited by itself: %s", k, stderr.String())
			}
			require.NoError(t, model.apply(line), "kill %d", k)
			if strings.HasPrefix(line, "paused ") {
				how = point
				break wait
			}
			if !strings.HasPrefix(line, "try-") && line != "ready" {
				acks++
			}
			if point == "" && acks >= killAfter {
				break wait
			}
			if point != "" && acks >= 800 {
				how = "random (" + point + " not reached)"
				break wait
			}
		case <-deadline.C:
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("kill %d: no progress from the child in 60s (waiting at %q): %s", k, point, stderr.String())
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	for line := range lines { // what it said before it died
		require.NoError(t, model.apply(line), "kill %d", k)
	}
	err = cmd.Wait()
	require.Error(t, err, "kill %d", k)
	return how
}
