package cli

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

// `retrigger ui` serves the web view on -http-addr, says where, asks for
// the users of -basic-auth-file, and stops cleanly.
func TestUICommand(t *testing.T) {
	t.Parallel()
	db, err := embedded.Open(context.Background(), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close(context.Background()) })
	ops := admin.New(eventstore.New(db, eventstore.Options{}), nil, messaging.DefaultNames())
	users := filepath.Join(t.TempDir(), "users")
	require.NoError(t, os.WriteFile(users, []byte("ada:pw\n"), 0o600))

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"ui", "-http-addr", "127.0.0.1:0", "-basic-auth-file", users, "-log-format", "json"},
			IO{In: strings.NewReader(""), Out: pw, Err: io.Discard, Ops: ops})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, line, "read-only")
	url := regexp.MustCompile(`http://[0-9.:]+`).FindString(line)
	require.NotEmpty(t, url, line)
	go io.Copy(io.Discard, pr)

	resp, err := http.Get(url + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	req, _ := http.NewRequest(http.MethodGet, url+"/errors", nil)
	req.SetBasicAuth("ada", "pw")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "Nothing here")
	cancel()
	require.Equal(t, 0, <-code)
}

func TestUICommandRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no such users file", []string{"ui", "-basic-auth-file", "/nonexistent"}, "-basic-auth-file"},
		{"through a server", []string{"-server", "http://127.0.0.1:1", "ui"}, "connects to MongoDB and NATS itself"},
		{"arguments", []string{"ui", "now"}, "takes flags"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := Run(context.Background(), tt.args, IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
		require.Equal(t, 2, code, tt.name)
		require.Contains(t, errOut.String(), tt.want, tt.name)
	}
	var errOut bytes.Buffer
	require.Equal(t, 0, Run(context.Background(), []string{"-help"}, IO{Out: io.Discard, Err: &errOut}))
	require.Contains(t, errOut.String(), "127.0.0.1:8090", "the help names the web view's default address")
}
