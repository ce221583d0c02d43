package deployments

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/retrigger/retrigger/shared/messaging"
)

// pendingFlags are flags the manifests already use but the commands do not
// have yet (announced in issue 12 and the commands issue). A variable of a
// pending flag that a command lacks makes its check skip, naming it; any
// other unknown variable fails. Remove an entry once every command has it.
var pendingFlags = map[string]string{}

// missing collects pending flags that commands lack, for one t.Skip.
type missing map[string][]string // flag -> commands

func (m missing) add(flagName, cmd string) {
	for _, c := range m[flagName] {
		if c == cmd {
			return
		}
	}
	m[flagName] = append(m[flagName], cmd)
}

// skipIfAny skips t, naming every missing flag, once the rest of the test
// has run (a skip after an error still fails the test).
func (m missing) skipIfAny(t *testing.T, what string) {
	t.Helper()
	if len(m) == 0 {
		return
	}
	var parts []string
	for f, cmds := range m {
		sort.Strings(cmds)
		parts = append(parts, fmt.Sprintf("-%s (RETRIGGER_%s; %s) missing from %s", f, strings.ToUpper(strings.ReplaceAll(f, "-", "_")), pendingFlags[f], strings.Join(cmds, ", ")))
	}
	sort.Strings(parts)
	t.Skipf("%s: the rest passed, but these flags are not in the commands' -help yet:\n  %s", what, strings.Join(parts, "\n  "))
}

// checkEnvFlags checks that every RETRIGGER_* variable of env is a flag of
// the command c, as its -help lists it.
func checkEnvFlags(t *testing.T, where string, c *command, env map[string]string, miss missing) {
	t.Helper()
	for _, name := range retriggerVars(env) {
		if _, ok := c.byEnv(name); ok {
			continue
		}
		flagName := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, "RETRIGGER_"), "_", "-"))
		if _, pending := pendingFlags[flagName]; pending {
			miss.add(flagName, c.name)
			continue
		}
		t.Errorf("%s: %s is not a flag of %s (its -help lists no -%s)", where, name, c.name, flagName)
	}
}

// setting returns the value of a command's flag in env, or the flag's
// default from -help; ok is false if the command has no such flag.
func setting(c *command, env map[string]string, flagName string) (string, bool) {
	f, ok := c.flags[flagName]
	envName := "RETRIGGER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
	if v, set := env[envName]; set {
		return v, ok
	}
	return f.def, ok
}

// workersConsumer is the durable consumer of an event type's workers, as
// the code names it.
func workersConsumer(prefix, typ string) (string, error) {
	return messaging.Names{StreamPrefix: prefix}.WorkersConsumer(typ), nil
}

// handlerTypes returns the event types of a -handlers value
// ("TYPE=KIND[:ARG];...").
func handlerTypes(handlers string) ([]string, error) {
	var types []string
	for _, part := range strings.Split(handlers, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		typ, _, ok := strings.Cut(part, "=")
		if !ok || typ == "" {
			return nil, fmt.Errorf("handler %q is not TYPE=HANDLER", part)
		}
		types = append(types, typ)
	}
	if len(types) == 0 {
		return nil, fmt.Errorf("no handler in %q", handlers)
	}
	return types, nil
}

// addrPort returns the port of a listen address like ":8080".
func addrPort(addr string) (string, error) {
	i := strings.LastIndex(addr, ":")
	if i < 0 || i == len(addr)-1 {
		return "", fmt.Errorf("listen address %q has no port", addr)
	}
	return addr[i+1:], nil
}
