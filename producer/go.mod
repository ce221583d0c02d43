module github.com/retrigger/retrigger/producer

go 1.26.8

require (
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/nats-io/nats.go v1.55.0
	github.com/retrigger/retrigger/shared v0.0.0
	github.com/rs/zerolog v1.35.1
	go.mongodb.org/mongo-driver/v2 v2.10.0
)

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/mattn/go-colorable v0.1.14 // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

replace github.com/retrigger/retrigger/shared => ../shared
