package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/svcupdate/svcupdate/internal/fleet"
)

// FleetLoadCounts says what a load did to one kind of row.
type FleetLoadCounts struct {
	Inserted  int
	Updated   int
	Unchanged int
}

// AdminChange is an instance whose admins the load changed; the starter
// sends its running workflows the SetAdmins Update with Admins.
type AdminChange struct {
	InstanceID string
	Admins     []string
}

// FleetKeptVersion is an instance the file lists on an older version than
// the one a completed update recorded; the recorded version is kept.
type FleetKeptVersion struct {
	InstanceID     string
	FileVersion    string
	CurrentVersion string
}

// FleetLoadReport is what UpsertFleet changed. Loading the same file again
// reports everything Unchanged and no admin changes.
type FleetLoadReport struct {
	Releases          FleetLoadCounts
	Slots             FleetLoadCounts
	Tenants           FleetLoadCounts
	Instances         FleetLoadCounts
	RecipientsAdded   int
	RecipientsRemoved int
	KeptVersions      []FleetKeptVersion
	AdminChanges      []AdminChange
}

// Every fleet statement takes whole columns as arrays (unnest), so a
// million-instance file is a handful of statements, not a million.

// releaseOrderClashSQL finds releases loaded earlier, missing from
// the file, whose order the file gives to another release.
const releaseOrderClashSQL = `
SELECT r.version, r.ordinal, f.version
FROM releases r JOIN unnest($1::text[], $2::int[]) AS f(version, ordinal) ON f.ordinal = r.ordinal
WHERE r.version <> ALL($1::text[])
ORDER BY r.ordinal`

const upsertReleasesSQL = `
INSERT INTO releases (version, name, ordinal, period_start, period_end)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::timestamptz[])
ON CONFLICT (version) DO UPDATE SET
    name = EXCLUDED.name, ordinal = EXCLUDED.ordinal, period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end
WHERE (releases.name, releases.ordinal, releases.period_start, releases.period_end)
      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.ordinal, EXCLUDED.period_start, EXCLUDED.period_end)
RETURNING xmax = 0`

// lockFileSlotsSQL locks the file's existing slots (in ID order, the
// order bookings lock them in) so no booking lands between the capacity
// check and the capacity change.
const lockFileSlotsSQL = `
SELECT s.release_version, s.region, s.starts_at, s.booked, f.capacity
FROM slots s
JOIN unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[]) AS f(release_version, region, starts_at, capacity)
  USING (release_version, region, starts_at)
ORDER BY s.id
FOR UPDATE OF s`

const upsertSlotsSQL = `
INSERT INTO slots (release_version, region, starts_at, window_length, capacity)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::interval[], $5::int[])
ON CONFLICT (release_version, region, starts_at) DO UPDATE SET
    window_length = EXCLUDED.window_length, capacity = EXCLUDED.capacity
WHERE (slots.window_length, slots.capacity) IS DISTINCT FROM (EXCLUDED.window_length, EXCLUDED.capacity)
RETURNING xmax = 0`

const upsertTenantsSQL = `
INSERT INTO tenants (id, name)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name
WHERE tenants.name IS DISTINCT FROM EXCLUDED.name
RETURNING xmax = 0`

const fileInstancesCTE = `
WITH f AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
        AS f(id, tenant_id, name, kind, region, time_zone, file_version)
)`

// keptVersionsSQL finds instances a completed update moved past the
// version the file lists; the load keeps their recorded version, because a
// fleet file written before the update must not undo it.
const keptVersionsSQL = fileInstancesCTE + `
SELECT f.id, f.file_version, i.current_version
FROM f JOIN instances i ON i.id = f.id
JOIN releases fr ON fr.version = f.file_version
JOIN releases cr ON cr.version = i.current_version
WHERE cr.ordinal > fr.ordinal
ORDER BY f.id`

const upsertInstancesSQL = fileInstancesCTE + `
INSERT INTO instances (id, tenant_id, name, kind, region, time_zone, current_version)
SELECT f.id, f.tenant_id, f.name, f.kind, f.region, f.time_zone,
       CASE WHEN cr.ordinal > fr.ordinal THEN i.current_version ELSE f.file_version END
FROM f
JOIN releases fr ON fr.version = f.file_version
LEFT JOIN instances i ON i.id = f.id
LEFT JOIN releases cr ON cr.version = i.current_version
ON CONFLICT (id) DO UPDATE SET
    tenant_id = EXCLUDED.tenant_id, name = EXCLUDED.name, kind = EXCLUDED.kind, region = EXCLUDED.region,
    time_zone = EXCLUDED.time_zone, current_version = EXCLUDED.current_version, updated_at = now()
WHERE (instances.tenant_id, instances.name, instances.kind, instances.region, instances.time_zone, instances.current_version)
      IS DISTINCT FROM (EXCLUDED.tenant_id, EXCLUDED.name, EXCLUDED.kind, EXCLUDED.region, EXCLUDED.time_zone, EXCLUDED.current_version)
RETURNING id, xmax = 0`

const adminsOfInstancesSQL = `
SELECT instance_id, email FROM recipients WHERE role = $2 AND instance_id = ANY($1::text[])`

// deleteRecipientsSQL removes the recipients of the file's instances
// that the file no longer lists (addresses compare case-insensitively).
const deleteRecipientsSQL = `
DELETE FROM recipients r
WHERE r.instance_id = ANY($1::text[])
  AND NOT EXISTS (
      SELECT 1 FROM unnest($2::text[], $3::text[], $4::text[]) AS f(instance_id, role, email)
      WHERE f.instance_id = r.instance_id AND f.role = r.role AND lower(f.email) = lower(r.email))`

const insertRecipientsSQL = `
INSERT INTO recipients (instance_id, role, email)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT (instance_id, role, lower(email)) DO UPDATE SET email = EXCLUDED.email
WHERE recipients.email <> EXCLUDED.email
RETURNING xmax = 0`

// UpsertFleet loads a validated fleet file in one transaction: releases,
// slots and tenants are inserted or updated, instances too (their version
// only ever moves forward, see FleetKeptVersion), and each listed
// instance's recipients become exactly the file's. Rows the file does not
// mention are kept: bookings and history refer to them. A slot's capacity
// cannot drop below its current bookings (ErrCapacityBelowBookings).
func (s *Store) UpsertFleet(ctx context.Context, fl *fleet.Fleet) (FleetLoadReport, error) {
	var report FleetLoadReport
	if fl == nil {
		return report, errorf(ErrInvalidRequest, "load fleet: no fleet given")
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		report = FleetLoadReport{}
		if err := upsertReleases(ctx, tx, fl, &report); err != nil {
			return err
		}
		if err := upsertSlots(ctx, tx, fl, &report); err != nil {
			return err
		}
		var ids, names []string
		for _, t := range fl.Tenants {
			ids, names = append(ids, t.ID), append(names, t.Name)
		}
		var err error
		report.Tenants, err = countUpserts(ctx, tx, len(fl.Tenants), "load tenants", upsertTenantsSQL, ids, names)
		if err != nil {
			return err
		}
		inserted, err := upsertInstances(ctx, tx, fl, &report)
		if err != nil {
			return err
		}
		return replaceRecipients(ctx, tx, fl, inserted, &report)
	})
	return report, err
}

// countUpserts runs an upsert returning "inserted" per changed row.
func countUpserts(ctx context.Context, tx pgx.Tx, total int, what, sql string, args ...any) (FleetLoadCounts, error) {
	var c FleetLoadCounts
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return c, mapError(err, what)
	}
	var inserted bool
	_, err = pgx.ForEachRow(rows, []any{&inserted}, func() error {
		if inserted {
			c.Inserted++
		} else {
			c.Updated++
		}
		return nil
	})
	c.Unchanged = total - c.Inserted - c.Updated
	return c, mapError(err, what)
}

func upsertReleases(ctx context.Context, tx pgx.Tx, fl *fleet.Fleet, report *FleetLoadReport) error {
	n := len(fl.Releases)
	versions, names, orders := make([]string, n), make([]string, n), make([]int32, n)
	starts, ends := make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
	for i, r := range fl.Releases {
		versions[i], names[i], orders[i] = r.Version, r.Name, int32(r.Order)
		starts[i] = pgtype.Timestamptz{Time: r.PeriodStart, Valid: r.HasPeriod()}
		ends[i] = pgtype.Timestamptz{Time: r.PeriodEnd, Valid: r.HasPeriod()}
	}
	rows, err := tx.Query(ctx, releaseOrderClashSQL, versions, orders)
	if err != nil {
		return mapError(err, "check release orders")
	}
	var clashes []string
	var loaded, wanted string
	var order int
	_, err = pgx.ForEachRow(rows, []any{&loaded, &order, &wanted}, func() error {
		clashes = append(clashes, fmt.Sprintf("release %s (loaded earlier, not in this file) has order %d, which the file gives to %s", loaded, order, wanted))
		return nil
	})
	if err != nil {
		return mapError(err, "check release orders")
	}
	if len(clashes) > 0 {
		return errorf(ErrDuplicate, "load releases: %s; list every release in the file with its order", strings.Join(clashes, "; "))
	}
	report.Releases, err = countUpserts(ctx, tx, n, "load releases", upsertReleasesSQL, versions, names, orders, starts, ends)
	return err
}

func upsertSlots(ctx context.Context, tx pgx.Tx, fl *fleet.Fleet, report *FleetLoadReport) error {
	var releases, regions []string
	var starts []time.Time
	var windows []pgtype.Interval
	var capacities []int32
	for _, r := range fl.Releases {
		for _, sl := range r.Slots {
			releases, regions, starts = append(releases, r.Version), append(regions, sl.Region), append(starts, sl.Start)
			windows, capacities = append(windows, interval(time.Duration(sl.Window))), append(capacities, int32(sl.Capacity))
		}
	}
	rows, err := tx.Query(ctx, lockFileSlotsSQL, releases, regions, starts, capacities)
	if err != nil {
		return mapError(err, "lock slots")
	}
	var refused []string
	var release, region string
	var start time.Time
	var booked, capacity int
	_, err = pgx.ForEachRow(rows, []any{&release, &region, &start, &booked, &capacity}, func() error {
		if capacity < booked {
			refused = append(refused, fmt.Sprintf("%s holds %d bookings, the file gives it capacity %d", slotName(release, region, start), booked, capacity))
		}
		return nil
	})
	if err != nil {
		return mapError(err, "lock slots")
	}
	if len(refused) > 0 {
		return errorf(ErrCapacityBelowBookings, "load slots: %s; keep each capacity at or above its bookings (instances can be moved by rescheduling)", strings.Join(refused, "; "))
	}
	report.Slots, err = countUpserts(ctx, tx, len(releases), "load slots", upsertSlotsSQL, releases, regions, starts, windows, capacities)
	return err
}

// upsertInstances loads the instances and returns the IDs it inserted.
func upsertInstances(ctx context.Context, tx pgx.Tx, fl *fleet.Fleet, report *FleetLoadReport) (map[string]bool, error) {
	n := len(fl.Instances)
	cols := make([][]string, 7)
	for i := range cols {
		cols[i] = make([]string, n)
	}
	for i, in := range fl.Instances {
		cols[0][i], cols[1][i], cols[2][i], cols[3][i] = in.ID, in.Tenant, in.Name, in.Kind
		cols[4][i], cols[5][i], cols[6][i] = in.Region, in.TimeZone, in.Version
	}
	args := make([]any, len(cols))
	for i := range cols {
		args[i] = cols[i]
	}
	rows, err := tx.Query(ctx, keptVersionsSQL, args...)
	if err != nil {
		return nil, mapError(err, "compare instance versions")
	}
	report.KeptVersions, err = pgx.CollectRows(rows, pgx.RowToStructByPos[FleetKeptVersion])
	if err != nil {
		return nil, mapError(err, "compare instance versions")
	}
	if len(report.KeptVersions) == 0 {
		report.KeptVersions = nil // a report without changes compares equal to the zero report
	}
	rows, err = tx.Query(ctx, upsertInstancesSQL, args...)
	if err != nil {
		return nil, mapError(err, "load instances")
	}
	inserted := map[string]bool{}
	var id string
	var isNew bool
	_, err = pgx.ForEachRow(rows, []any{&id, &isNew}, func() error {
		if isNew {
			inserted[id] = true
			report.Instances.Inserted++
		} else {
			report.Instances.Updated++
		}
		return nil
	})
	report.Instances.Unchanged = n - report.Instances.Inserted - report.Instances.Updated
	return inserted, mapError(err, "load instances")
}

// replaceRecipients makes each instance's recipients the file's and
// reports the instances (loaded before) whose admin set changed.
func replaceRecipients(ctx context.Context, tx pgx.Tx, fl *fleet.Fleet, inserted map[string]bool, report *FleetLoadReport) error {
	ids := make([]string, len(fl.Instances))
	var recInstances, recRoles, recEmails []string
	for i, in := range fl.Instances {
		ids[i] = in.ID
		for _, list := range []struct {
			role   string
			emails []string
		}{{RoleAdmin, in.Admins}, {RoleUser, in.Users}, {RoleExtra, in.ExtraRecipients}} {
			for _, e := range list.emails {
				recInstances, recRoles, recEmails = append(recInstances, in.ID), append(recRoles, list.role), append(recEmails, e)
			}
		}
	}

	rows, err := tx.Query(ctx, adminsOfInstancesSQL, ids, RoleAdmin)
	if err != nil {
		return mapError(err, "read admins")
	}
	before := map[string]map[string]bool{}
	var id, email string
	_, err = pgx.ForEachRow(rows, []any{&id, &email}, func() error {
		if before[id] == nil {
			before[id] = map[string]bool{}
		}
		before[id][strings.ToLower(email)] = true
		return nil
	})
	if err != nil {
		return mapError(err, "read admins")
	}
	for _, in := range fl.Instances {
		if inserted[in.ID] {
			continue // no workflow can run for an instance loaded just now
		}
		after := map[string]bool{}
		for _, a := range in.Admins {
			after[strings.ToLower(a)] = true
		}
		if !maps.Equal(before[in.ID], after) {
			report.AdminChanges = append(report.AdminChanges, AdminChange{InstanceID: in.ID, Admins: slices.Clone(in.Admins)})
		}
	}

	tag, err := tx.Exec(ctx, deleteRecipientsSQL, ids, recInstances, recRoles, recEmails)
	if err != nil {
		return mapError(err, "remove recipients")
	}
	report.RecipientsRemoved = int(tag.RowsAffected())
	counts, err := countUpserts(ctx, tx, len(recEmails), "add recipients", insertRecipientsSQL, recInstances, recRoles, recEmails)
	report.RecipientsAdded = counts.Inserted
	return err
}
