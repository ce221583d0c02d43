package eventstore

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
)

// Leadership is a producer's hold on an events collection: only its holder
// relays, schedules and sweeps. It lives in the collection's checkpoint
// document, beside the resume token, and its epoch, one more at every new
// holder, fences the token: a former holder that was paused past its lease
// (a stopped VM, a long GC) cannot write a checkpoint when it wakes.
type Leadership struct {
	Name  string    // the checkpoint document
	Owner string    // the holding producer
	Epoch int64     // one more at every new holder
	Until time.Time // the holder must renew before it; others take over after it
}

// Fields of the leadership in the checkpoint document.
const (
	fieldLeaderOwner = "leader.owner"
	fieldLeaderEpoch = "leader.epoch"
	fieldLeaderUntil = "leader.until"
)

// AcquireLeadership takes the leadership of name for owner until now+ttl
// when nobody holds it, or its holder's lease ran out. It reports false,
// and who holds it, when another owner does.
func (s *Store) AcquireLeadership(ctx context.Context, name, owner string, now time.Time, ttl time.Duration) (Leadership, bool, error) {
	filter := bson.D{
		{Key: "_id", Value: name},
		{Key: "$or", Value: bson.A{
			bson.D{{Key: fieldLeaderUntil, Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$gt", Value: now}}}}}},
			bson.D{{Key: fieldLeaderOwner, Value: owner}},
		}},
	}
	update := bson.D{
		{Key: "$set", Value: bson.D{{Key: fieldLeaderOwner, Value: owner}, {Key: fieldLeaderUntil, Value: now.Add(ttl)}, {Key: "leader.acquiredAt", Value: now}}},
		{Key: "$inc", Value: bson.D{{Key: fieldLeaderEpoch, Value: int64(1)}}},
	}
	_, err := s.checkpoints.UpdateOne(ctx, filter, update, true)
	if err != nil && !errors.Is(err, store.ErrDuplicate) { // a duplicate: another holds it
		return Leadership{}, false, wrap("acquiring the leadership", err)
	}
	held, err := s.Leader(ctx, name)
	if err != nil {
		return Leadership{}, false, err
	}
	return held, held.Owner == owner, nil
}

// Leader returns who holds the leadership of name (zero: nobody ever did).
func (s *Store) Leader(ctx context.Context, name string) (Leadership, error) {
	doc, err := s.checkpoints.FindOne(ctx, bson.D{{Key: "_id", Value: name}})
	if errors.Is(err, store.ErrNotFound) {
		return Leadership{Name: name}, nil
	}
	if err != nil {
		return Leadership{}, wrap("reading the leadership", err)
	}
	l := Leadership{Name: name}
	l.Owner, _ = doc.Lookup("leader", "owner").StringValueOK()
	l.Epoch, _ = doc.Lookup("leader", "epoch").AsInt64OK()
	l.Until = dateOf(doc, fieldLeaderUntil)
	return l, nil
}

// RenewLeadership extends a held leadership to now+ttl. ErrLeaseLost:
// another owner took it over.
func (s *Store) RenewLeadership(ctx context.Context, l *Leadership, now time.Time, ttl time.Duration) error {
	until := now.Add(ttl)
	n, err := s.checkpoints.UpdateOne(ctx, byLeader(l), bson.D{{Key: "$set", Value: bson.D{{Key: fieldLeaderUntil, Value: until}}}}, false)
	if err != nil {
		return wrap("renewing the leadership", err)
	}
	if n == 0 {
		return ErrLeaseLost
	}
	l.Until = until
	return nil
}

// ReleaseLeadership ends a held leadership now, so that a standby takes
// over at once instead of after the lease.
func (s *Store) ReleaseLeadership(ctx context.Context, l *Leadership, now time.Time) error {
	_, err := s.checkpoints.UpdateOne(ctx, byLeader(l), bson.D{{Key: "$set", Value: bson.D{{Key: fieldLeaderUntil, Value: now}}}}, false)
	return wrap("releasing the leadership", err)
}

func byLeader(l *Leadership) bson.D {
	return bson.D{{Key: "_id", Value: l.Name}, {Key: fieldLeaderOwner, Value: l.Owner}, {Key: fieldLeaderEpoch, Value: l.Epoch}}
}

// SaveTokenAsLeader saves the resume token only while l's epoch holds the
// leadership. ErrLeaseLost: it does not, and nothing was written.
func (s *Store) SaveTokenAsLeader(ctx context.Context, l *Leadership, token bson.Raw, at time.Time) error {
	var val any
	if token != nil {
		val = token
	}
	n, err := s.checkpoints.UpdateOne(ctx, bson.D{{Key: "_id", Value: l.Name}, {Key: fieldLeaderEpoch, Value: l.Epoch}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "token", Value: val}, {Key: "updatedAt", Value: at}}}}, false)
	if err != nil {
		return wrap("saving the resume token", err)
	}
	if n == 0 {
		return ErrLeaseLost
	}
	return nil
}
