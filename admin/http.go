package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// The HTTP API: POST /admin/v1/<operation> with the request as JSON. An
// action answers with newline-delimited JSON: {"progress": ...} lines as
// it goes, then {"result": ...} or {"error": ...}. A request refused
// before an action starts, and any failed stats, list or show, is a
// status code and {"error": "..."}: 400 a malformed request or a filter
// that can never select anything the action changes (ErrInvalid), 404
// ids that no event has, or a type never seen (ErrNotFound), 409 a
// request that would change nothing: ids of events the action does not
// apply to, a resume of a type not held (ErrNoChange); 500 anything else.
const apiPrefix = "/admin/v1/"

// Handler serves ops over HTTP under /admin/v1/, logging every change to
// log. It accepts only JSON POSTs without a foreign Origin, so that a web
// page a browser opens cannot drive it (a cross-site form cannot send
// JSON). It has no authentication: serve it on a loopback address, as the
// local run does, or behind an authenticating proxy.
func Handler(ops Operations, log zerolog.Logger) http.Handler {
	mux := http.NewServeMux()
	h := &server{ops: ops, log: log}
	mux.HandleFunc("POST "+apiPrefix+"stats", func(w http.ResponseWriter, r *http.Request) {
		h.call(w, r, func(ctx context.Context, _ json.RawMessage) (any, error) { return ops.Stats(ctx) })
	})
	mux.HandleFunc("POST "+apiPrefix+"list", func(w http.ResponseWriter, r *http.Request) {
		h.call(w, r, func(ctx context.Context, body json.RawMessage) (any, error) {
			var req ListRequest
			if err := decode(body, &req); err != nil {
				return nil, err
			}
			return ops.List(ctx, req)
		})
	})
	mux.HandleFunc("POST "+apiPrefix+"show", func(w http.ResponseWriter, r *http.Request) {
		h.call(w, r, func(ctx context.Context, body json.RawMessage) (any, error) {
			var req struct {
				ID string `json:"id"`
			}
			if err := decode(body, &req); err != nil {
				return nil, err
			}
			return ops.Show(ctx, req.ID)
		})
	})
	mux.HandleFunc("POST "+apiPrefix+"flow", func(w http.ResponseWriter, r *http.Request) {
		h.call(w, r, func(ctx context.Context, _ json.RawMessage) (any, error) { return ops.Flow(ctx) })
	})
	mux.HandleFunc("POST "+apiPrefix+"pause", func(w http.ResponseWriter, r *http.Request) {
		h.call(w, r, func(ctx context.Context, body json.RawMessage) (any, error) {
			var req PauseRequest
			if err := decode(body, &req); err != nil {
				return nil, err
			}
			res, err := ops.Pause(ctx, req)
			if err == nil {
				h.log.Info().Str("type", req.Type).Time("until", req.Until).Str("reason", req.Reason).Str("by", req.By).Msg("paused a type")
			}
			return res, err
		})
	})
	mux.HandleFunc("POST "+apiPrefix+"resume", func(w http.ResponseWriter, r *http.Request) {
		h.call(w, r, func(ctx context.Context, body json.RawMessage) (any, error) {
			var req ResumeRequest
			if err := decode(body, &req); err != nil {
				return nil, err
			}
			res, err := ops.Resume(ctx, req)
			if err == nil {
				h.log.Info().Str("type", req.Type).Str("by", req.By).Msg("resumed a type")
			}
			return res, err
		})
	})
	for name, action := range map[string]func(context.Context, ActionRequest, func(Progress)) (*ActionResult, error){
		"retry": ops.Retry, "cancel": ops.Cancel, "redrive": ops.Redrive, "purge": ops.Purge,
	} {
		mux.HandleFunc("POST "+apiPrefix+name, func(w http.ResponseWriter, r *http.Request) { h.action(w, r, name, action) })
	}
	return mux
}

type server struct {
	ops Operations
	log zerolog.Logger
}

// maxRequest bounds a request body.
const maxRequest = 1 << 20

// read checks a request and reads its body; it answers the request itself
// when it is refused.
func (h *server) read(w http.ResponseWriter, r *http.Request) (json.RawMessage, bool) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, errors.New("send the request as application/json"))
		return nil, false
	}
	if origin := r.Header.Get("Origin"); origin != "" && !strings.HasSuffix(origin, "://"+r.Host) {
		writeError(w, http.StatusForbidden, fmt.Errorf("requests from %s are refused", origin))
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequest))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return nil, false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	return body, true
}

func (h *server) call(w http.ResponseWriter, r *http.Request, fn func(context.Context, json.RawMessage) (any, error)) {
	body, ok := h.read(w, r)
	if !ok {
		return
	}
	out, err := fn(r.Context(), body)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// line is one line of an action's answer.
type line struct {
	Progress *Progress     `json:"progress,omitempty"`
	Result   *ActionResult `json:"result,omitempty"`
	Error    string        `json:"error,omitempty"`
	Invalid  bool          `json:"invalid,omitempty"`
}

// progressEvery spaces the progress lines of an action.
const progressEvery = 200 * time.Millisecond

func (h *server) action(w http.ResponseWriter, r *http.Request, name string, fn func(context.Context, ActionRequest, func(Progress)) (*ActionResult, error)) {
	body, ok := h.read(w, r)
	if !ok {
		return
	}
	var req ActionRequest
	if err := decode(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	// The status is sent with the first line: until then a refusal can
	// still be a status code.
	var (
		mu      sync.Mutex
		enc     = json.NewEncoder(w)
		last    time.Time
		started bool
	)
	flusher, _ := w.(http.Flusher)
	send := func(l line) {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
		}
		_ = enc.Encode(l)
		if flusher != nil {
			flusher.Flush()
		}
	}
	res, err := fn(r.Context(), req, func(p Progress) {
		if time.Since(last) >= progressEvery || p.Done == p.Total {
			last = time.Now()
			send(line{Progress: &p})
		}
	})
	if res != nil && !res.DryRun && res.Applied > 0 {
		h.log.Info().Str("action", name).Str("by", req.By).Int("applied", res.Applied).Int("skipped", res.Skipped).
			Strs("ids", res.Changed[:min(len(res.Changed), 20)]).Msg("admin action changed events")
	}
	if err != nil {
		status := statusOf(err)
		if status >= http.StatusInternalServerError {
			h.log.Warn().Err(err).Str("action", name).Msg("admin action stopped")
		}
		mu.Lock()
		refused := !started
		mu.Unlock()
		if refused {
			writeError(w, status, err)
			return
		}
		send(line{Error: err.Error(), Invalid: errors.Is(err, ErrInvalid), Result: res})
		return
	}
	send(line{Result: res})
}

func decode(body json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// statusOf is the status code of an operation's error.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrNoChange):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// Client calls the operations of a server (Handler) at BaseURL, such as
// the local run's http://127.0.0.1:8080.
type Client struct {
	BaseURL string
	HTTP    *http.Client // default http.DefaultClient
}

var _ Operations = (*Client)(nil)

func (c *Client) post(ctx context.Context, op string, req any) (*http.Response, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+apiPrefix+op, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("calling %s: %w", c.BaseURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, maxRequest)).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		// The server's refusals come back as the same errors, saying
		// what the server said.
		switch resp.StatusCode {
		case http.StatusBadRequest:
			return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(e.Error, ErrInvalid.Error()+": "))
		case http.StatusNotFound:
			return nil, &refusal{kind: ErrNotFound, msg: e.Error}
		case http.StatusConflict:
			return nil, &refusal{kind: ErrNoChange, msg: e.Error}
		}
		return nil, fmt.Errorf("%s: %s", c.BaseURL, e.Error)
	}
	return resp, nil
}

func (c *Client) call(ctx context.Context, op string, req, out any) error {
	resp, err := c.post(ctx, op, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("reading the answer of %s: %w", c.BaseURL, err)
	}
	return nil
}

func (c *Client) Stats(ctx context.Context) (*Stats, error) {
	var s Stats
	return &s, c.call(ctx, "stats", struct{}{}, &s)
}

func (c *Client) List(ctx context.Context, r ListRequest) ([]Item, error) {
	var items []Item
	return items, c.call(ctx, "list", r, &items)
}

func (c *Client) Show(ctx context.Context, id string) (*Show, error) {
	var s Show
	return &s, c.call(ctx, "show", map[string]string{"id": id}, &s)
}

func (c *Client) action(ctx context.Context, op string, r ActionRequest, progress func(Progress)) (*ActionResult, error) {
	resp, err := c.post(ctx, op, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("reading the answer of %s: %w", c.BaseURL, err)
		}
		switch {
		case l.Error != "":
			if l.Invalid {
				return l.Result, fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(l.Error, ErrInvalid.Error()+": "))
			}
			return l.Result, fmt.Errorf("%s: %s", c.BaseURL, l.Error)
		case l.Result != nil:
			return l.Result, nil
		case l.Progress != nil && progress != nil:
			progress(*l.Progress)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", c.BaseURL, err)
	}
	return nil, fmt.Errorf("%s ended its answer without a result", c.BaseURL)
}

func (c *Client) Flow(ctx context.Context) ([]FlowStatus, error) {
	var out []FlowStatus
	return out, c.call(ctx, "flow", struct{}{}, &out)
}

func (c *Client) Pause(ctx context.Context, r PauseRequest) (*FlowStatus, error) {
	var out FlowStatus
	return &out, c.call(ctx, "pause", r, &out)
}

func (c *Client) Resume(ctx context.Context, r ResumeRequest) (*FlowStatus, error) {
	var out FlowStatus
	return &out, c.call(ctx, "resume", r, &out)
}

func (c *Client) Retry(ctx context.Context, r ActionRequest, p func(Progress)) (*ActionResult, error) {
	return c.action(ctx, "retry", r, p)
}

func (c *Client) Cancel(ctx context.Context, r ActionRequest, p func(Progress)) (*ActionResult, error) {
	return c.action(ctx, "cancel", r, p)
}

func (c *Client) Redrive(ctx context.Context, r ActionRequest, p func(Progress)) (*ActionResult, error) {
	return c.action(ctx, "redrive", r, p)
}

func (c *Client) Purge(ctx context.Context, r ActionRequest, p func(Progress)) (*ActionResult, error) {
	return c.action(ctx, "purge", r, p)
}
