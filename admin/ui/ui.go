package ui

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/admin"
)

// Backend is what the web view reads and does: admin.Admin implements it.
type Backend interface {
	Stats(ctx context.Context) (*admin.Stats, error)
	Page(ctx context.Context, r admin.PageRequest) (*admin.Page, error)
	Activity(ctx context.Context, window, step time.Duration) (*admin.Activity, error)
	Show(ctx context.Context, id string) (*admin.Show, error)
	Retry(ctx context.Context, r admin.ActionRequest, progress func(admin.Progress)) (*admin.ActionResult, error)
	Cancel(ctx context.Context, r admin.ActionRequest, progress func(admin.Progress)) (*admin.ActionResult, error)
	Redrive(ctx context.Context, r admin.ActionRequest, progress func(admin.Progress)) (*admin.ActionResult, error)
	Purge(ctx context.Context, r admin.ActionRequest, progress func(admin.Progress)) (*admin.ActionResult, error)
	Pause(ctx context.Context, r admin.PauseRequest) (*admin.FlowStatus, error)
	Resume(ctx context.Context, r admin.ResumeRequest) (*admin.FlowStatus, error)
}

var _ Backend = (*admin.Admin)(nil)

// Config configures the web view. Zero fields take their defaults.
type Config struct {
	// Ops runs the reads and actions (required).
	Ops Backend
	// AllowWrites shows and accepts the actions; default false: read-only.
	AllowWrites bool
	// Users, when not nil, must authenticate with HTTP basic auth (see
	// LoadUsers).
	Users *Users
	// Refresh is how often the overview reloads itself; default 10s.
	Refresh time.Duration
	// By names who acts in the history of the events an action changes,
	// followed by the basic-auth user when there is one; default
	// "retrigger ui".
	By string
	// Secret signs the session tokens; default: random per process (a
	// restart asks open forms to be loaded again).
	Secret []byte
	// Logger logs every change made; default: none.
	Logger *zerolog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() (Config, error) {
	if c.Ops == nil {
		return c, errors.New("ui: Config.Ops is required")
	}
	if c.Refresh <= 0 {
		c.Refresh = 10 * time.Second
	}
	if c.By == "" {
		c.By = "retrigger ui"
	}
	if len(c.Secret) == 0 {
		c.Secret = make([]byte, 32)
		if _, err := rand.Read(c.Secret); err != nil {
			return c, fmt.Errorf("ui: making a secret: %w", err)
		}
	}
	if c.Logger == nil {
		nop := zerolog.Nop()
		c.Logger = &nop
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// server serves the pages.
type server struct {
	cfg   Config
	pages map[string]*template.Template
	csrf  *csrf
}

// New returns the web view's handler, serving its pages from the root
// of the URLs it is given ("/", "/events", "/static/...").
func New(cfg Config) (http.Handler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &server{cfg: cfg, csrf: &csrf{secret: cfg.Secret}}
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.overview)
	mux.HandleFunc("GET /events", s.list)
	mux.HandleFunc("GET /errors", s.list)
	mux.HandleFunc("GET /event", s.event)
	mux.HandleFunc("GET /confirm/{action}", s.confirm)
	mux.HandleFunc("POST /do/{action}", s.act)
	mux.HandleFunc("POST /flow/{op}", s.flowAction)
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheStatic(http.FileServerFS(static))))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "there is no page at "+r.URL.Path)
	})
	var h http.Handler = mux
	h = s.csrf.protect(h)
	h = secureHeaders(h)
	if cfg.Users != nil {
		h = cfg.Users.require(h)
	}
	return h, nil
}

// parsePages parses each page's template with the layout.
func parsePages() (map[string]*template.Template, error) {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, name)
		if err != nil {
			return nil, err
		}
		pages[base] = t
	}
	return pages, nil
}

// secureHeaders: no framing (clickjacking), no sniffing, no referrer
// leaking ids to other sites, and a content security policy that lets
// the page load only its own script and style: an injected <script>
// would not run even if it escaped the templates.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

func cacheStatic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		next.ServeHTTP(w, r)
	})
}

// view is what every page's template gets.
type view struct {
	Title   string
	Nav     string // overview, events, errors
	Writes  bool
	CSRF    string
	Refresh int // seconds; 0: none
	Now     time.Time
	User    string
	Data    any
}

// render renders page with data, or an error page.
func (s *server) render(w http.ResponseWriter, r *http.Request, status int, page string, v view) {
	v.Writes = s.cfg.AllowWrites
	v.CSRF = s.csrf.token(w, r)
	v.Now = s.cfg.Now().UTC()
	v.User = userOf(r)
	var buf bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&buf, "layout", v); err != nil {
		s.cfg.Logger.Error().Err(err).Str("page", page).Msg("rendering a page")
		http.Error(w, "rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// fail renders an error page.
func (s *server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, r, status, "error", view{Title: http.StatusText(status), Data: struct {
		Status  int
		Message string
	}{status, msg}})
}

// failErr renders err: a request the operations refuse is the caller's,
// with the status the admin API gives it.
func (s *server) failErr(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, admin.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, admin.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, admin.ErrNoChange):
		status = http.StatusConflict
	}
	s.fail(w, r, status, err.Error())
}
