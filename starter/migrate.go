package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/svcupdate/svcupdate/internal/connect"
	"github.com/svcupdate/svcupdate/schemas"
)

// maintenanceDatabase is the database every Postgres server has, used to
// create the one DATABASE_URL names.
const maintenanceDatabase = "postgres"

func newMigrateCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate [--create-database]",
		Short: "apply the database migrations",
		Args:  maxArgs(0),
	}
	create := cmd.Flags().Bool("create-database", false, "create the database DATABASE_URL names if it does not exist")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return runMigrate(cmd.Context(), e, *create) }
	return cmd
}

func runMigrate(ctx context.Context, e *env, create bool) error {
	if create {
		if err := createDatabase(ctx, e); err != nil {
			return err
		}
	}
	if err := e.waitFor(ctx, "Postgres", func(ctx context.Context) error {
		_, err := e.postgres(ctx)
		return err
	}); err != nil {
		return err
	}
	applied, err := schemas.Migrate(ctx, e.cfg.DatabaseURL)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(e.stdout, "schema up to date")
		return nil
	}
	for _, a := range applied {
		fmt.Fprintf(e.stdout, "applied migration %d (%s)\n", a.Version, a.Source)
	}
	return nil
}

// createDatabase creates the database of DATABASE_URL through the server's
// maintenance database, unless it exists.
func createDatabase(ctx context.Context, e *env) error {
	target, err := pgx.ParseConfig(e.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	name := target.Database
	if name == "" || name == maintenanceDatabase {
		return nil
	}
	admin := target.Copy()
	admin.Database = maintenanceDatabase
	var conn *pgx.Conn
	if err := e.waitFor(ctx, fmt.Sprintf("Postgres at %s:%d", target.Host, target.Port), func(ctx context.Context) error {
		conn, err = pgx.ConnectConfig(ctx, admin)
		if err != nil && connect.PostgresAnswered(err) {
			return connect.Permanent(err)
		}
		return err
	}); err != nil {
		return fmt.Errorf("connect to Postgres to create database %q: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	created, err := schemas.CreateDatabase(ctx, conn, name)
	if err != nil || !created {
		return err
	}
	fmt.Fprintf(e.stdout, "created database %s\n", name)
	return nil
}
