package deployments

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
)

var composeDir = filepath.Join(repoRoot, "deployments", "compose")

// loadCompose loads a compose file as `docker compose` does: schema
// validation, interpolation (with an empty environment, so the file's
// defaults apply), normalization, merge keys.
func loadCompose(t *testing.T, file string) (*types.Project, error) {
	t.Helper()
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  filepath.Dir(file),
		ConfigFiles: []types.ConfigFile{{Filename: file}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("retrigger", true) })
}

func composeProject(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadCompose(t, filepath.Join(composeDir, "compose.yaml"))
	if err != nil {
		t.Fatalf("compose-go loader: %v", err)
	}
	return p
}

// retriggerServices returns the services that run an image binary.
func retriggerServices(t *testing.T, p *types.Project) map[string]*command {
	t.Helper()
	out := map[string]*command{}
	for name, s := range p.Services {
		if len(s.Command) > 0 {
			if c := imageBinary(t, s.Command[0]); c != nil {
				out[name] = c
			}
		}
	}
	return out
}

func envMap(s types.ServiceConfig) map[string]string {
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		} else {
			env[k] = ""
		}
	}
	return env
}

// TestComposeLoads loads compose.yaml through compose-go and checks the
// services the issue asks for.
func TestComposeLoads(t *testing.T) {
	p := composeProject(t)
	for _, name := range []string{"mongodb", "nats", "producer", "consumer", "archiver"} {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}
	if s := p.Services["consumer"]; s.Deploy == nil || s.Deploy.Replicas == nil || *s.Deploy.Replicas != 3 {
		t.Errorf("consumer deploy.replicas is not 3")
	}
	rs := retriggerServices(t, p)
	for _, name := range []string{"producer", "consumer", "archiver"} {
		c := rs[name]
		if c == nil {
			t.Errorf("service %s does not run a binary of the image", name)
			continue
		}
		if c.name != name {
			t.Errorf("service %s runs %s", name, c.name)
		}
	}
	for name := range rs {
		s := p.Services[name]
		if !s.ReadOnly {
			t.Errorf("%s: read_only is not true", name)
		}
		if uid, _, _ := strings.Cut(s.User, ":"); uid == "" || uid == "0" || uid == "root" {
			t.Errorf("%s: user %q, want the image's non-root uid", name, s.User)
		}
		if len(s.CapDrop) != 1 || s.CapDrop[0] != "ALL" {
			t.Errorf("%s: cap_drop %v, want [ALL]", name, s.CapDrop)
		}
		if s.Build == nil {
			t.Errorf("%s: no build section", name)
		} else {
			df := s.Build.Dockerfile
			if !filepath.IsAbs(df) {
				df = filepath.Join(s.Build.Context, df)
			}
			if df != dockerfilePath {
				t.Errorf("%s: builds %s, want %s", name, df, dockerfilePath)
			}
		}
	}
}

// TestComposeLoaderRejects shows that loading can fail: an unknown key is
// refused by the compose schema.
func TestComposeLoaderRejects(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(composeDir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "      replicas: 3", "      replcas: 3", 1)
	if bad == string(data) {
		t.Fatal("compose.yaml has no '      replicas: 3' line to break")
	}
	f := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(f, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCompose(t, f); err == nil {
		t.Error("a compose file with deploy.replcas loaded without error")
	} else {
		t.Logf("rejected: %v", err)
	}
}

// TestComposeEnvAreFlags: every RETRIGGER_* variable of a service is a
// flag of the command it runs.
func TestComposeEnvAreFlags(t *testing.T) {
	p := composeProject(t)
	miss := missing{}
	for name, c := range retriggerServices(t, p) {
		if c.skipped != "" {
			continue
		}
		c = builtCommand(t, c.name)
		env := envMap(p.Services[name])
		checkEnvFlags(t, "compose service "+name, c, env, miss)
		if c.name == "consumer" && env["RETRIGGER_HANDLERS"] == "" {
			t.Errorf("consumer: no RETRIGGER_HANDLERS (a required flag)")
		}
	}
	miss.skipIfAny(t, "RETRIGGER_* variables of compose.yaml")
}

// TestComposeWiring: the commands reach MongoDB and NATS by their service
// names and ports, on the replica set the healthcheck initiates; the
// stop grace period exceeds each command's drain timeout; NATS runs with
// the mounted nats.conf.
func TestComposeWiring(t *testing.T) {
	p := composeProject(t)
	mongo := p.Services["mongodb"]
	replSet := ""
	for i, a := range mongo.Command {
		if a == "--replSet" && i+1 < len(mongo.Command) {
			replSet = mongo.Command[i+1]
		}
	}
	if replSet == "" {
		t.Fatalf("mongodb runs without --replSet: no change streams")
	}
	if mongo.HealthCheck == nil || !strings.Contains(strings.Join(mongo.HealthCheck.Test, " "), "rs.initiate({_id: '"+replSet+"'") {
		t.Errorf("the mongodb healthcheck does not initiate replica set %s", replSet)
	}
	miss := missing{}
	for name, c := range retriggerServices(t, p) {
		if c.skipped != "" {
			continue
		}
		c = builtCommand(t, c.name)
		s := p.Services[name]
		env := envMap(s)
		uriStr, _ := setting(c, env, "mongodb-uri")
		if u, err := url.Parse(uriStr); err != nil || u.Hostname() != "mongodb" || u.Query().Get("replicaSet") != replSet {
			t.Errorf("%s: RETRIGGER_MONGODB_URI %q is not the mongodb service with replicaSet=%s", name, uriStr, replSet)
		}
		natsURL, _ := setting(c, env, "nats-url")
		if u, err := url.Parse(natsURL); err != nil || u.Hostname() != "nats" || u.Port() != "4222" {
			t.Errorf("%s: RETRIGGER_NATS_URL %q is not nats://nats:4222", name, natsURL)
		}
		drain, hasFlag := setting(c, env, "drain-timeout")
		if !hasFlag {
			miss.add("drain-timeout", c.name)
		}
		if d, err := time.ParseDuration(drain); drain != "" && err == nil {
			if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= d {
				t.Errorf("%s: stop_grace_period %v does not exceed the drain timeout %s", name, s.StopGracePeriod, d)
			}
		}
		addr, hasFlag := setting(c, env, "http-addr")
		if !hasFlag {
			miss.add("http-addr", c.name)
		}
		if port, err := addrPort(addr); err == nil {
			published := false
			for _, pc := range s.Ports {
				published = published || fmt.Sprint(pc.Target) == port
			}
			if !published {
				t.Errorf("%s: the HTTP port %s is not among its ports", name, port)
			}
		}
	}
	nats := p.Services["nats"]
	conf := ""
	for i, a := range nats.Command {
		if a == "--config" && i+1 < len(nats.Command) {
			conf = nats.Command[i+1]
		}
	}
	mounted := false
	for _, v := range nats.Volumes {
		if v.Target == conf && v.Source == filepath.Join(composeDir, "nats.conf") {
			mounted = true
		}
	}
	if conf == "" || !mounted {
		t.Errorf("nats does not run with deployments/compose/nats.conf mounted as its --config (%q)", conf)
	}
	miss.skipIfAny(t, "compose wiring")
}

// TestNATSConfig loads nats.conf into the nats-server version the code is
// tested with, checks it fsyncs always, and starts it (on loopback, random
// ports, a temporary store) to see JetStream come up.
func TestNATSConfig(t *testing.T) {
	opts, err := server.ProcessConfigFile(filepath.Join(composeDir, "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !opts.JetStream {
		t.Error("JetStream is not enabled")
	}
	if !opts.SyncAlways {
		t.Errorf("JetStream sync is not always (sync interval %v)", opts.SyncInterval)
	}
	if opts.Port != 4222 || opts.HTTPPort != 8222 {
		t.Errorf("ports %d and %d, want 4222 and monitoring 8222 (compose.yaml and the healthcheck use them)", opts.Port, opts.HTTPPort)
	}
	opts.Host, opts.HTTPHost = "127.0.0.1", "127.0.0.1"
	opts.Port, opts.HTTPPort = -1, -1
	opts.StoreDir = t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server with nats.conf did not become ready within 10s")
	}
	if !s.JetStreamEnabled() {
		t.Error("nats-server with nats.conf runs without JetStream")
	}
}

// checkJetStreamBlock checks that settings are valid in a nats-server
// jetstream {} block and set sync to always.
func checkJetStreamBlock(t *testing.T, settings map[string]any) {
	t.Helper()
	var b strings.Builder
	b.WriteString("jetstream {\n  store_dir: \"" + t.TempDir() + "\"\n")
	ks := make([]string, 0, len(settings))
	for k := range settings {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		fmt.Fprintf(&b, "  %s: %q\n", k, fmt.Sprint(settings[k]))
	}
	b.WriteString("}\n")
	f := filepath.Join(t.TempDir(), "js.conf")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(f)
	if err != nil {
		t.Fatalf("jetstream settings %v: %v", settings, err)
	}
	if !opts.SyncAlways {
		t.Errorf("jetstream settings %v do not make sync always", settings)
	}
}
