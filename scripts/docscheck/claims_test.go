package docscheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/retrigger/retrigger/shared/messaging"
)

// documents are the pages written for users: the README, docs/, and the
// README of each folder.
func documents(t *testing.T) []string {
	t.Helper()
	docs := []string{"README.md"}
	for _, pattern := range []string{"docs/*.md", "*/README.md", "*/*/README.md", "*/*/*/README.md"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		require.NoError(t, err)
		for _, p := range m {
			rel, _ := filepath.Rel(root, p)
			docs = append(docs, filepath.ToSlash(rel))
		}
	}
	return docs
}

// The documents are written for their readers, not as reports of the work:
// no issue numbers, no "this branch" (a reader has neither).
func TestDocumentsCiteNoIssuesOrBranches(t *testing.T) {
	t.Parallel()
	internal := regexp.MustCompile(`(?i)\bissue #?\d+|\bthis branch\b|\bissues? \d+(, \d+)* item`)
	for _, doc := range documents(t) {
		for i, line := range strings.Split(read(t, doc), "\n") {
			require.False(t, internal.MatchString(line), "%s:%d cites an issue or a branch: %s", doc, i+1, line)
		}
	}
}

// Each event type has its own durable consumer (messaging.Names), so no
// document may say that all workers or replicas share one.
func TestNoDocumentSaysWorkersShareOneConsumer(t *testing.T) {
	t.Parallel()
	n := messaging.DefaultNames()
	require.NotEqual(t, n.WorkersConfig("a", messaging.ConsumerOptions{}).Durable, n.WorkersConfig("b", messaging.ConsumerOptions{}).Durable,
		"the premise: two types, two durable consumers")
	shared := regexp.MustCompile(`(?i)\b(all|every)\s+(the\s+)?(workers|replicas|consumers)\s+share\s+one\s+durable`)
	for _, doc := range documents(t) {
		text := strings.Join(strings.Fields(read(t, doc)), " ")
		require.False(t, shared.MatchString(text), "%s says %q: each type has its own durable consumer", doc, shared.FindString(text))
	}
}

// The README has a Deploy section that says how to build and push the
// image and points to deployments/README.md.
func TestReadmeHasADeploySection(t *testing.T) {
	t.Parallel()
	readme := read(t, "README.md")
	_, after, ok := strings.Cut(readme, "\n## Deploy\n")
	require.True(t, ok, "README.md has no ## Deploy section")
	section, _, _ := strings.Cut(after, "\n## ")
	for _, want := range []string{"docker build", "docker push", "deployments/README.md", "overlays/example"} {
		require.Contains(t, section, want, "README.md's Deploy section")
	}
}

// Every path deployments/README.md names in backquotes exists.
func TestDeploymentsReadmePathsExist(t *testing.T) {
	t.Parallel()
	path := regexp.MustCompile("`((?:\\.\\./)?(?:docker|compose|kubernetes|streams|deployments)/[^` ]+)`")
	readme := read(t, "deployments/README.md")
	found := 0
	for _, m := range path.FindAllStringSubmatch(readme, -1) {
		p := m[1]
		if !strings.HasPrefix(p, "deployments/") {
			p = filepath.Join("deployments", p)
		}
		_, err := os.Stat(filepath.Join(root, p))
		require.NoError(t, err, "deployments/README.md names %s", m[1])
		found++
	}
	require.Greater(t, found, 5, "the paths of deployments/README.md")
}
