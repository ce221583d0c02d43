package mongostore

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/retrigger/retrigger/shared/redact"
	"github.com/retrigger/retrigger/shared/store"
)

// DB is a connected database. It implements store.Database.
type DB struct {
	client *mongo.Client
	db     *mongo.Database
	// transactions: the deployment is a replica set or a sharded cluster.
	transactions bool
}

var _ store.Database = (*DB)(nil)

// Option tunes Open.
type Option func(*options.ClientOptions)

// WithAppName names the connecting component in the server's logs, slow
// query log and currentOp (appName).
func WithAppName(name string) Option {
	return func(o *options.ClientOptions) { o.SetAppName(name) }
}

// Open connects to the deployment at uri and pings it with ctx; database is
// the database that holds retrigger's collections.
//
// Reads go to the primary whatever the URI says: retrigger reads to decide
// (is this event still runnable, is it in the error state), and a
// secondary's stale answer would have it ack live messages as stale.
// Writes use the deployment's default write concern, except the moves
// between events and errors, which run in a transaction with a majority
// write concern where the deployment has transactions.
func Open(ctx context.Context, uri, database string, opts ...Option) (*DB, error) {
	co := options.Client().ApplyURI(uri)
	for _, o := range opts {
		o(co)
	}
	client, err := mongo.Connect(co)
	if err != nil {
		// A parse error may quote the connection string, or a piece of it.
		return nil, fmt.Errorf("connecting to %s: %w", redact.URL(uri), redact.Error(err, uri))
	}
	var hello bson.M
	if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("pinging %s: %w", redact.URL(uri), redact.Error(err, uri))
	}
	_, replicaSet := hello["setName"]
	sharded := hello["msg"] == "isdbgrid"
	db := client.Database(database, options.Database().SetReadPreference(readpref.Primary()))
	return &DB{client: client, db: db, transactions: replicaSet || sharded}, nil
}

// Transact implements store.Database with a transaction of a session:
// snapshot reads, majority writes, retried by the driver on transient
// errors. On a standalone server it returns store.ErrNoTransactions.
func (d *DB) Transact(ctx context.Context, fn func(ctx context.Context) error) error {
	if !d.transactions {
		return store.ErrNoTransactions
	}
	sess, err := d.client.StartSession()
	if err != nil {
		return fmt.Errorf("starting a session: %w", err)
	}
	defer sess.EndSession(context.WithoutCancel(ctx))
	txn := options.Transaction().
		SetWriteConcern(writeconcern.Majority()).
		SetReadConcern(readconcern.Snapshot()).
		SetReadPreference(readpref.Primary())
	_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) { return nil, fn(ctx) }, txn)
	return err
}

// Name is the database's name.
func (d *DB) Name() string { return d.db.Name() }

// Collection implements store.Database.
func (d *DB) Collection(name string) store.Collection {
	return &collection{coll: d.db.Collection(name)}
}

// Close disconnects. Safe to call twice.
func (d *DB) Close(ctx context.Context) error {
	err := d.client.Disconnect(ctx)
	if err != nil && !errors.Is(err, mongo.ErrClientDisconnected) {
		return fmt.Errorf("disconnecting: %w", err)
	}
	return nil
}

// Server error codes, from the server's src/mongo/base/error_codes.yml.
const (
	// CappedPositionLost: a tailable cursor, as under a change stream, was
	// overtaken by the capped oplog. Not resumable from its position.
	codeCappedPositionLost = 136
	// ChangeStreamFatalError: the stream cannot go on, for example because
	// its resume token is no longer in the oplog (older servers report that
	// case with this code). Not resumable.
	codeChangeStreamFatalError = 280
	// ChangeStreamHistoryLost: the resume point fell off the oplog. Not
	// resumable.
	codeChangeStreamHistoryLost = 286
	// InvalidResumeToken: the token cannot resume this stream (it is of
	// another collection, or the stream was invalidated, as by a drop).
	// Not resumable: start from the present and sweep.
	codeInvalidResumeToken = 260
	// Location40573: "The $changeStream stage is only supported on replica
	// sets": a standalone mongod.
	codeChangeStreamReplicaSetOnly = 40573
	// Location40324: "Unrecognized pipeline stage name": a server (or an
	// emulation of one) without the $changeStream stage.
	codeUnrecognizedStage = 40324
	// NotImplemented and CommandNotSupported, as servers that emulate
	// MongoDB answer a $changeStream they lack.
	codeNotImplemented      = 238
	codeCommandNotSupported = 115
)

// classifyWatch is classify for opening a change stream: the codes of a
// server without change streams mean no retry will help.
func classifyWatch(err error) error {
	var server mongo.ServerError
	if errors.As(err, &server) && (server.HasErrorCode(codeChangeStreamReplicaSetOnly) ||
		server.HasErrorCode(codeUnrecognizedStage) || server.HasErrorCode(codeNotImplemented) ||
		server.HasErrorCode(codeCommandNotSupported)) {
		return fmt.Errorf("%w: %w", store.ErrNoChangeStreams, err)
	}
	return classify(err)
}

// classify maps driver errors to the port's sentinels, keeping the driver's
// error in the chain. The driver itself retries the errors that are
// resumable (network errors, elections); what reaches here is final.
func classify(err error) error {
	var server mongo.ServerError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mongo.ErrNoDocuments):
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	case mongo.IsDuplicateKeyError(err):
		return fmt.Errorf("%w: %w", store.ErrDuplicate, err)
	case errors.As(err, &server) && (server.HasErrorCode(codeChangeStreamHistoryLost) ||
		server.HasErrorCode(codeChangeStreamFatalError) ||
		server.HasErrorCode(codeInvalidResumeToken) ||
		server.HasErrorCode(codeCappedPositionLost)):
		return fmt.Errorf("%w: %w", store.ErrHistoryLost, err)
	}
	return err
}
