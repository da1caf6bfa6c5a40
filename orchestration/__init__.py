"""Running the tap at scale: shards of accounts, their Meltano states, and the Dagster job."""
