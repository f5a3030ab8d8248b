#!/bin/sh
# Creates Temporal's two Postgres databases (persistence and advanced
# visibility) when missing and brings their schemas to the version the
# schema tool embeds, which is its server's. Run by docker-compose.yml's
# temporal-schema job (temporalio/admin-tools) and by `make cluster`; safe
# to run again. Reads the variables of deploy/temporal/server.env plus
# POSTGRES_SEEDS and POSTGRES_PWD; SQL_TOOL names the schema tool.
set -eu
tool=${SQL_TOOL:-temporal-sql-tool}

# schema DATABASE SCHEMA
schema() {
	set -- "$1" "$2" --plugin "$DB" --endpoint "$POSTGRES_SEEDS" --port "$DB_PORT" --user "$POSTGRES_USER" --database "$1"
	database=$1 embedded=$2
	shift 2
	# The tool reads the password from SQL_PASSWORD, kept off the command line.
	if ! out=$(SQL_PASSWORD=${POSTGRES_PWD:-} "$tool" "$@" create-database 2>&1); then
		case $out in
		*"already exists"*) ;;
		*)
			echo "$out" >&2
			exit 1
			;;
		esac
	fi
	SQL_PASSWORD=${POSTGRES_PWD:-} "$tool" "$@" setup-schema --version 0.0
	SQL_PASSWORD=${POSTGRES_PWD:-} "$tool" "$@" update-schema --schema-name "$embedded"
	echo "$database: schema $embedded up to date"
}

schema "$DBNAME" postgresql/v12/temporal
schema "$VISIBILITY_DBNAME" postgresql/v12/visibility
