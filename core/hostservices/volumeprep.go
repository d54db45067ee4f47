package hostservices

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultVolumeWorkers is how many volumes the background preparation
// creates at once: a storm of a thousand newly declared clients must not
// make a thousand clones at the same time on the disk their logins read.
const DefaultVolumeWorkers = 4

// WithVolumeWorkers sets how many volumes the background preparation
// (RunVolumePrep) creates at once; n < 1 keeps DefaultVolumeWorkers.
func WithVolumeWorkers(n int) Option {
	return func(s *Services) {
		if n >= 1 {
			s.prep.workers = n
		}
	}
}

// volumePrep makes clients' volumes before their first iSCSI login, so that
// the login only opens the volume: the clone is created in the background
// when the client is declared (PrepareVolume) and at the first DHCP of its
// boot (Report), by a bounded set of workers (RunVolumePrep).
//
// Every creation of a volume, the background one and the one an Attach
// still has to make, goes through create: one creation per volume at a
// time, a second caller waits for the first one's result instead of making
// the clone again. A creation that fails is logged; the login retries it
// as it always did.
type volumePrep struct {
	workers int

	mu       sync.Mutex
	queue    []string             // client names waiting for a worker, oldest first
	queued   map[string]bool      // the names in queue
	inflight map[string]*creation // volume name → its creation under way
	made     map[string]string    // volume name → image it is known to exist for
	wake     chan struct{}        // a worker may find work (capacity 1)

	// A batch is the work from an empty queue with no worker busy until
	// the same again: its end is logged, with how long it took.
	busy       int       // workers preparing a volume
	batchStart time.Time // when the batch's first volume was taken
	batchDone  int       // clients the batch looked at
}

// creation is one volume being created; err is set before done closes.
type creation struct {
	done chan struct{}
	err  error
}

func newVolumePrep() *volumePrep {
	return &volumePrep{
		workers: DefaultVolumeWorkers, queued: map[string]bool{}, inflight: map[string]*creation{},
		made: map[string]string{}, wake: make(chan struct{}, 1),
	}
}

// PrepareVolume has the volume of the client called name created in the
// background, if it does not exist yet: the daemon calls it for every
// client written through the admin API or by the config's reconciliation.
// It returns at once; a name already waiting is not queued twice. The
// volume is looked at again even if it was made before (the client's image
// or volume may have changed).
func (s *Services) PrepareVolume(name string) {
	s.prep.mu.Lock()
	delete(s.prep.made, name) // the volume may have been deleted with its client
	s.prep.mu.Unlock()
	s.prep.enqueue(name)
}

// PrepareAllVolumes queues every client of the store for PrepareVolume:
// the daemon calls it once at start, after the config's reconciliation.
func (s *Services) PrepareAllVolumes(ctx context.Context) error {
	cs, err := s.clients.ListClients(ctx)
	if err != nil {
		return fmt.Errorf("prepare the clients' volumes: %w", err)
	}
	for _, c := range cs {
		s.prep.enqueue(c.Name)
	}
	return nil
}

// prepareForBoot queues the volume of client c at the first DHCP event of
// its boot, unless it is known to exist for c's image already, at the
// front of the queue: its login comes in seconds, before those of clients
// merely declared.
func (s *Services) prepareForBoot(name string) {
	p := s.prep
	p.mu.Lock()
	if _, made := p.made[name]; made {
		p.mu.Unlock()
		return
	}
	if p.queued[name] {
		for i, n := range p.queue {
			if n == name {
				copy(p.queue[1:i+1], p.queue[:i])
				p.queue[0] = name
				break
			}
		}
	} else {
		p.queued[name] = true
		p.queue = append(p.queue, "")
		copy(p.queue[1:], p.queue)
		p.queue[0] = name
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *volumePrep) enqueue(name string) {
	p.mu.Lock()
	if !p.queued[name] {
		p.queued[name] = true
		p.queue = append(p.queue, name)
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// next takes the oldest waiting client name.
func (p *volumePrep) next() (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return "", false
	}
	name := p.queue[0]
	p.queue[0] = ""
	p.queue = p.queue[1:]
	delete(p.queued, name)
	if p.busy == 0 && p.batchDone == 0 {
		p.batchStart = time.Now()
	}
	p.busy++
	if len(p.queue) > 0 {
		select { // let another worker take the next one
		case p.wake <- struct{}{}:
		default:
		}
	}
	return name, true
}

// finished counts a client a worker is done with, and logs the end of the
// batch when it was the last one.
func (p *volumePrep) finished(s *Services) {
	p.mu.Lock()
	p.busy--
	p.batchDone++
	n, took, end := p.batchDone, time.Since(p.batchStart), p.busy == 0 && len(p.queue) == 0
	if end {
		p.batchDone = 0
	}
	p.mu.Unlock()
	if end {
		s.logger.Info("volumes prepared ahead of their logins", "clients", n, "took", took.Round(time.Millisecond))
	}
}

// unqueue takes name out of the queue: its login is here and makes the
// volume itself rather than wait behind the other clients.
func (p *volumePrep) unqueue(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.queued[name] {
		return
	}
	delete(p.queued, name)
	for i, n := range p.queue {
		if n == name {
			p.queue = append(p.queue[:i], p.queue[i+1:]...)
			break
		}
	}
}

// VolumesPending is how many clients wait for their volume's background
// creation, or are having it made now.
func (s *Services) VolumesPending() int {
	s.prep.mu.Lock()
	defer s.prep.mu.Unlock()
	return len(s.prep.queue) + s.prep.busy
}

// newPendingGauge exposes VolumesPending as dls_volumes_pending: an admin
// (or a benchmark) sees when every declared client's clone is ready.
func (s *Services) newPendingGauge() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dls_volumes_pending",
		Help: "Client volumes waiting for, or under, their creation ahead of the first iSCSI login (0: every declared client's clone is ready).",
	}, func() float64 { return float64(s.VolumesPending()) })
}

// RunVolumePrep creates the queued clients' volumes, WithVolumeWorkers at
// once, until ctx ends. Clients queued before it runs are served when it
// starts.
func (s *Services) RunVolumePrep(ctx context.Context) {
	var wg sync.WaitGroup
	for i := 0; i < s.prep.workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if name, ok := s.prep.next(); ok {
					s.prepareOne(ctx, name)
					s.prep.finished(s)
					continue
				}
				select {
				case <-ctx.Done():
					return
				case <-s.prep.wake:
				}
			}
		}()
	}
	wg.Wait()
}

// prepareOne creates the volume of the client called name if it does not
// exist. A client deleted meanwhile, or one whose image is not on a
// running storage, is left to its login.
func (s *Services) prepareOne(ctx context.Context, name string) {
	if ctx.Err() != nil {
		return
	}
	c, err := s.clients.GetClient(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return
	}
	if err != nil {
		s.logger.Warn("volume not prepared: its login will make it", "client", name, "error", err)
		return
	}
	if c.Image == "" {
		return
	}
	s.prep.mu.Lock()
	img, made := s.prep.made[c.VolumeName()]
	s.prep.mu.Unlock()
	if made && img == c.Image {
		return
	}
	st, err := s.storage.StorageForImage(ctx, c.Image)
	if err == nil {
		err = s.createVolume(ctx, c, st)
	}
	if err != nil && ctx.Err() == nil {
		s.logger.Warn("volume not prepared: its login will make it", "client", name, "image", c.Image, "error", err)
		return
	}
	s.logger.Debug("volume prepared", "client", name, "volume", c.VolumeName())
}

// volumeCreator is the part of a storage plugin that creates volumes.
type volumeCreator interface {
	CreateVolume(ctx context.Context, req storage.VolumeRequest) (storage.Volume, error)
}

// createVolume creates client c's volume from its image's current version:
// one that exists already is fine. Of concurrent calls for one volume (a
// login and the background preparation), only the first creates: the
// others wait for its result.
func (s *Services) createVolume(ctx context.Context, c store.Client, st volumeCreator) error {
	vol := c.VolumeName()
	p := s.prep
	p.mu.Lock()
	if cr := p.inflight[vol]; cr != nil {
		p.mu.Unlock()
		select {
		case <-cr.done:
			return cr.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	cr := &creation{done: make(chan struct{})}
	p.inflight[vol] = cr
	p.mu.Unlock()

	// A staged rollout's ring gets its pinned version from the start.
	version, err := pinnedVersion(c)
	if err == nil {
		_, err = st.CreateVolume(ctx, storage.VolumeRequest{Volume: vol, Image: c.Image, Version: version})
	}
	if errors.Is(err, storage.ErrExists) {
		err = nil
	}
	if err != nil {
		err = fmt.Errorf("create volume %s: %w", vol, err)
	}
	p.mu.Lock()
	delete(p.inflight, vol)
	if err == nil {
		p.made[vol] = c.Image
	}
	p.mu.Unlock()
	cr.err = err
	close(cr.done)
	return err
}

// awaitCreation waits for a creation of volume vol under way, if any: an
// Attach or a reset must not act on a half-made volume. Its outcome does
// not matter here: the caller finds the volume, or not, and acts as it
// would have.
func (s *Services) awaitCreation(ctx context.Context, vol string) error {
	s.prep.mu.Lock()
	cr := s.prep.inflight[vol]
	s.prep.mu.Unlock()
	if cr == nil {
		return nil
	}
	select {
	case <-cr.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the creation of volume %s: %w", vol, ctx.Err())
	}
}

// forgetVolume drops what is known of volume vol: it was not found.
func (s *Services) forgetVolume(vol string) {
	s.prep.mu.Lock()
	delete(s.prep.made, vol)
	s.prep.mu.Unlock()
}
