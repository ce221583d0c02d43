package deployments

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// deploymentsReadme is this folder's README, its whitespace folded.
func deploymentsReadme(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "deployments", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(data)), " ")
}

// TestReadmeAgreesWithManifests: what deployments/README.md says of the
// manifests and the image is what they hold: the producer's replicas and
// update strategy, every binary of the image, how to push it.
func TestReadmeAgreesWithManifests(t *testing.T) {
	readme := deploymentsReadme(t)
	producer := find[*appsv1.Deployment](kustomizeBuild(t, filepath.Join("overlays", "example")))["retrigger-producer"]
	if producer == nil || producer.Spec.Replicas == nil {
		t.Fatal("no producer Deployment with replicas in the example overlay")
	}
	words := map[int32]string{1: "one replica", 2: "two replicas", 3: "three replicas"}
	if w := words[*producer.Spec.Replicas]; w == "" || !strings.Contains(readme, "producer runs "+w) {
		t.Errorf("deployments/README.md does not say the producer runs %q (base/producer.yaml: %d)", w, *producer.Spec.Replicas)
	}
	switch strategy := producer.Spec.Strategy.Type; strategy {
	case appsv1.RollingUpdateDeploymentStrategyType:
		if !strings.Contains(readme, "rolling update") || strings.Contains(readme, "Recreate") {
			t.Errorf("deployments/README.md must say the producer has a rolling update, and not Recreate")
		}
	default:
		if !strings.Contains(readme, string(strategy)) {
			t.Errorf("deployments/README.md does not name the producer's strategy %s", strategy)
		}
	}
	d, err := parseDockerfile(dockerfilePath, dockerVars())
	if err != nil {
		t.Fatal(err)
	}
	builds, err := d.stage("build").goBuilds()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range builds {
		if name := path.Base(b.output); !strings.Contains(readme, "`"+name+"`") && !strings.Contains(readme, "/usr/local/bin/"+name) {
			t.Errorf("deployments/README.md does not list the image's command %s", name)
		}
	}
	for _, want := range []string{"docker push", "kustomize edit set image retrigger=", "mongodb.env"} {
		if !strings.Contains(readme, want) {
			t.Errorf("deployments/README.md does not say %q", want)
		}
	}
	for _, stale := range []string{"once the admin command exists", "nothing exports", "secret.example.yaml", "overlays/keda", "overlays/monitoring"} {
		if strings.Contains(readme, stale) {
			t.Errorf("deployments/README.md says %q, which the code no longer holds", stale)
		}
	}
}
