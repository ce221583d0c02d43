// Package deployments holds no code: its tests check the deployment
// artefacts beside it (docker/, compose/, kubernetes/) against the commands
// they run. It is its own module so that the heavy dependencies of those
// checks (Kubernetes API types, kustomize, compose-go) stay out of the
// modules of the commands.
//
// The tests build the commands with the flags of docker/Dockerfile and read
// their flags from their -help output; see README.md for what they check
// and what could not be exercised without a container engine or a cluster.
package deployments
