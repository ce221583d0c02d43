package producer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/retrigger/retrigger/shared/natsserver"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

// watchFails is an engine whose events collection cannot open a change
// stream, with err.
type watchFails struct {
	store.Database
	err   error
	tried *signal // closed at the first Watch
}

type signal struct {
	once sync.Once
	ch   chan struct{}
}

func newSignal() *signal             { return &signal{ch: make(chan struct{})} }
func (s *signal) fire()              { s.once.Do(func() { close(s.ch) }) }
func (s *signal) C() <-chan struct{} { return s.ch }

type watchFailsEvents struct {
	store.Collection
	db watchFails
}

func (c watchFailsEvents) Watch(context.Context, store.WatchOptions) (store.ChangeStream, error) {
	c.db.tried.fire()
	return nil, c.db.err
}

func (d watchFails) Collection(name string) store.Collection {
	if name == "events" {
		return watchFailsEvents{Collection: d.Database.Collection(name), db: d}
	}
	return d.Database.Collection(name)
}

// On a server without change streams the producer stops with an error
// that names -disable-change-streams, instead of retrying forever; with
// the flag it runs on the sweeper; a passing failure is still retried.
func TestServerWithoutChangeStreams(t *testing.T) {
	t.Parallel()
	noStreams := fmt.Errorf("watching events: %w: (Location40573) The $changeStream stage is only supported on replica sets", store.ErrNoChangeStreams)
	tests := []struct {
		name    string
		err     error
		disable bool
		wantErr bool // Run returns by itself, with ErrNoChangeStreams
	}{
		{"standalone mongod", noStreams, false, true},
		{"sweeper only", noStreams, true, false},
		{"a passing failure", errors.New("connection reset"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nc := testNATS(t)
			db, err := embedded.Open(t.Context(), embedded.Options{})
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close(context.Background()) })
			tried := newSignal()
			p, err := New(Config{DisableChangeStreams: tt.disable}, watchFails{Database: db, err: tt.err, tried: tried}, nc)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			if tt.wantErr {
				err := <-done
				require.ErrorIs(t, err, ErrNoChangeStreams)
				require.ErrorIs(t, err, store.ErrNoChangeStreams)
				require.ErrorContains(t, err, "-disable-change-streams")
				return
			}
			if tt.disable {
				<-p.Ready()
			} else {
				<-tried.C() // the relay tried, and goes on trying
			}
			select {
			case err := <-done:
				t.Fatalf("Run returned %v before it was stopped", err)
			default:
			}
			cancel()
			require.NoError(t, <-done)
		})
	}
}

// On a JetStream cluster, a stream with fewer than 3 replicas is a warning
// at start; on a single server it is not.
func TestWarnsOfFewReplicasOnACluster(t *testing.T) {
	t.Parallel()
	cluster := testCluster(t, 3)
	single := testNATS(t)
	tests := []struct {
		name     string
		nc       *nats.Conn
		replicas int
		wantWarn bool
	}{
		{"cluster, 1 replica", cluster, 1, true},
		{"cluster, 3 replicas", cluster, 3, false},
		{"single server, 1 replica", single, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the cases share the cluster's streams.
			db, err := embedded.Open(t.Context(), embedded.Options{})
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close(context.Background()) })
			var logs bytes.Buffer
			cfg := Config{Logger: zerolog.New(&syncWriter{w: &logs})}
			cfg.Streams.Replicas = tt.replicas
			p, err := New(cfg, db, tt.nc)
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			require.NoError(t, p.Setup(ctx))
			warned := strings.Contains(logs.String(), "fewer than 3 replicas")
			require.Equal(t, tt.wantWarn, warned, logs.String())
			if tt.wantWarn {
				require.Contains(t, logs.String(), "-stream-replicas 3")
				require.Contains(t, logs.String(), `"stream":"RETRIGGER_EVENTS"`)
				require.Contains(t, logs.String(), `"stream":"RETRIGGER_DLQ"`)
			}
		})
	}
}

func TestStreamReplicas(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		info          *jetstream.StreamInfo
		wantClustered bool
		wantReplicas  int
	}{
		{"none", nil, false, 0},
		{"single server", &jetstream.StreamInfo{Config: jetstream.StreamConfig{Replicas: 1}}, false, 1},
		{"leader only", &jetstream.StreamInfo{Config: jetstream.StreamConfig{Replicas: 1}, Cluster: &jetstream.ClusterInfo{Leader: "n1"}}, false, 1},
		{"cluster", &jetstream.StreamInfo{Config: jetstream.StreamConfig{Replicas: 1}, Cluster: &jetstream.ClusterInfo{Name: "c1", Leader: "n1"}}, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clustered, replicas := streamReplicas(tt.info)
			require.Equal(t, tt.wantClustered, clustered)
			require.Equal(t, tt.wantReplicas, replicas)
		})
	}
}

func testNATS(t *testing.T) *nats.Conn {
	t.Helper()
	s, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// testCluster starts a JetStream cluster of n in-process servers, waits
// until it can place a stream of n replicas, and connects to it.
func testCluster(t *testing.T, n int) *nats.Conn {
	t.Helper()
	ports := make([]int, n)
	var routes []*url.URL
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ports[i] = l.Addr().(*net.TCPAddr).Port
		require.NoError(t, l.Close())
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])})
	}
	var urls []string
	for i, port := range ports {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
			NoSigs: true, NoLog: true, Cluster: server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: port}, Routes: routes,
		})
		require.NoError(t, err)
		s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		require.True(t, s.ReadyForConnections(10*time.Second))
		urls = append(urls, s.ClientURL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	// The meta leader is elected after a few seconds: wait until a stream
	// of n replicas can be placed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "READY", Subjects: []string{"ready"}, Replicas: n})
		cancel()
		if err == nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "the cluster elected no leader: %v", err)
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nc
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
