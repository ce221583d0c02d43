package deployments

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	yamlv3 "go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// object is one decoded manifest.
type object struct {
	source     string // file, or kustomize build of a directory
	apiVersion string
	kind       string
	name       string
	value      any // *appsv1.Deployment, *scaledObject, ...
}

// newTyped returns an empty value of the Go type of apiVersion and kind.
// Kubernetes kinds use k8s.io/api, the Prometheus Operator's use its own
// API module, kustomize's its types package; KEDA and the MongoDB operator
// have no module cheap enough to import (KEDA's pulls in every scaler's
// SDK), so their kinds use the small local structs below, which carry the
// upstream field names of the fields these manifests may use.
func newTyped(apiVersion, kind string) (any, bool) {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, true
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1 Secret":
		return &corev1.Secret{}, true
	case "v1 Service":
		return &corev1.Service{}, true
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, true
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, true
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &monitoringv1.PrometheusRule{}, true
	case "keda.sh/v1alpha1 ScaledObject":
		return &scaledObject{}, true
	case "mongodbcommunity.mongodb.com/v1 MongoDBCommunity":
		return &mongoDBCommunity{}, true
	case "kustomize.config.k8s.io/v1beta1 Kustomization", "kustomize.config.k8s.io/v1alpha1 Component":
		return &kusttypes.Kustomization{}, true
	}
	return nil, false
}

// decodeStrict decodes one YAML document into v as the API server would
// refuse it: unknown fields, duplicate fields, and fields that differ from
// the Go type's JSON names only by case are errors.
func decodeStrict(doc []byte, v any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(js, v, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// splitYAML returns the non-empty documents of a multi-document YAML file.
func splitYAML(data []byte) ([][]byte, error) {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	var docs [][]byte
	for {
		var n yamlv3.Node
		if err := dec.Decode(&n); errors.Is(err, io.EOF) {
			return docs, nil
		} else if err != nil {
			return nil, err
		}
		if len(n.Content) == 0 {
			continue
		}
		out, err := yamlv3.Marshal(&n)
		if err != nil {
			return nil, err
		}
		docs = append(docs, out)
	}
}

// decodeManifests strictly decodes every document of data into its type.
func decodeManifests(source string, data []byte) ([]object, error) {
	docs, err := splitYAML(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	var objs []object
	var errs []error
	for i, doc := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			errs = append(errs, fmt.Errorf("%s #%d: %w", source, i+1, err))
			continue
		}
		v, ok := newTyped(tm.APIVersion, tm.Kind)
		if !ok {
			errs = append(errs, fmt.Errorf("%s #%d: no Go type known for apiVersion %q kind %q", source, i+1, tm.APIVersion, tm.Kind))
			continue
		}
		if err := decodeStrict(doc, v); err != nil {
			errs = append(errs, fmt.Errorf("%s #%d (%s %s): %w", source, i+1, tm.APIVersion, tm.Kind, err))
			continue
		}
		name := ""
		if m, ok := v.(metav1.Object); ok {
			name = m.GetName()
		}
		objs = append(objs, object{source: source, apiVersion: tm.APIVersion, kind: tm.Kind, name: name, value: v})
	}
	return objs, errors.Join(errs...)
}

// find returns the objects of a kind, by name.
func find[T any](objs []object) map[string]T {
	out := map[string]T{}
	for _, o := range objs {
		if v, ok := o.value.(T); ok {
			out[o.name] = v
		}
	}
	return out
}

// scaledObject is KEDA's keda.sh/v1alpha1 ScaledObject, spec only.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              scaledObjectSpec `json:"spec"`
}

type scaledObjectSpec struct {
	ScaleTargetRef        *kedaScaleTarget `json:"scaleTargetRef"`
	PollingInterval       *int32           `json:"pollingInterval,omitempty"`
	InitialCooldownPeriod *int32           `json:"initialCooldownPeriod,omitempty"`
	CooldownPeriod        *int32           `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount      *int32           `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32           `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32           `json:"maxReplicaCount,omitempty"`
	Advanced              *struct {
		HorizontalPodAutoscalerConfig *struct {
			Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			Name     string                                         `json:"name,omitempty"`
		} `json:"horizontalPodAutoscalerConfig,omitempty"`
		RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
		ScalingModifiers              *struct {
			Formula          string `json:"formula,omitempty"`
			Target           string `json:"target,omitempty"`
			ActivationTarget string `json:"activationTarget,omitempty"`
			MetricType       string `json:"metricType,omitempty"`
		} `json:"scalingModifiers,omitempty"`
	} `json:"advanced,omitempty"`
	Triggers []kedaTrigger `json:"triggers"`
	Fallback *struct {
		FailureThreshold int32  `json:"failureThreshold"`
		Replicas         int32  `json:"replicas"`
		Behavior         string `json:"behavior,omitempty"`
	} `json:"fallback,omitempty"`
}

type kedaScaleTarget struct {
	Name                   string `json:"name"`
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

type kedaTrigger struct {
	Type              string            `json:"type"`
	Name              string            `json:"name,omitempty"`
	UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
		Kind string `json:"kind,omitempty"`
	} `json:"authenticationRef,omitempty"`
	MetricType string `json:"metricType,omitempty"`
}

// mongoDBCommunity is the MongoDB operator's MongoDBCommunity, with the
// fields of the example only (a strict decode then also catches a field
// added to the example without a look at the operator's documentation).
type mongoDBCommunity struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Type     string `json:"type"`
		Members  int    `json:"members"`
		Version  string `json:"version"`
		Security struct {
			Authentication struct {
				Modes []string `json:"modes"`
			} `json:"authentication"`
		} `json:"security"`
		Users []struct {
			Name              string `json:"name"`
			DB                string `json:"db"`
			PasswordSecretRef struct {
				Name string `json:"name"`
				Key  string `json:"key,omitempty"`
			} `json:"passwordSecretRef"`
			Roles []struct {
				Name string `json:"name"`
				DB   string `json:"db"`
			} `json:"roles"`
			ScramCredentialsSecretName string `json:"scramCredentialsSecretName"`
		} `json:"users"`
		AdditionalMongodConfig map[string]any `json:"additionalMongodConfig,omitempty"`
	} `json:"spec"`
}

// envOf resolves a container's environment as the kubelet would: envFrom
// ConfigMaps and Secrets (in order, with their prefix), then env entries.
// Values from valueFrom are reported as "" with their name.
func envOf(c corev1.Container, cms map[string]*corev1.ConfigMap, secrets map[string]*corev1.Secret) (map[string]string, error) {
	env := map[string]string{}
	var errs []error
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := cms[from.ConfigMapRef.Name]
			if !ok {
				errs = append(errs, fmt.Errorf("container %s: envFrom ConfigMap %q is not in the manifests", c.Name, from.ConfigMapRef.Name))
				continue
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = v
			}
		case from.SecretRef != nil:
			s, ok := secrets[from.SecretRef.Name]
			if !ok {
				errs = append(errs, fmt.Errorf("container %s: envFrom Secret %q is not in the manifests", c.Name, from.SecretRef.Name))
				continue
			}
			for k, v := range s.StringData {
				env[from.Prefix+k] = v
			}
			for k, v := range s.Data {
				env[from.Prefix+k] = string(v)
			}
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env, errors.Join(errs...)
}

// retriggerVars returns the RETRIGGER_* names of env, sorted.
func retriggerVars(env map[string]string) []string {
	var out []string
	for k := range env {
		if strings.HasPrefix(k, "RETRIGGER_") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
