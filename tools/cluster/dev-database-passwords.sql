-- The dev environment's database passwords, as the SCRAM-SHA-256 verifiers PostgreSQL stores (what psql's
-- \password sends): they let a role log in with the password, which Pulumi.dev.yaml holds encrypted under
-- the published dev passphrase, without the password itself being anywhere in the repository. A verifier
-- cannot be turned back into its password, nor used to log in. tools/cluster.sh applies them after
-- `python -m sandbox_infra database-script --env dev`; tests/integration/test_database.py proves they match.
ALTER ROLE sandbox_platform_migrator PASSWORD 'SCRAM-SHA-256$4096:G9iSpFgreW4OwpxNtv1eEw==$JfN9Fx/a2wPu8h7Bk4Z58L3jVVG/B/q/f6n9fD9aEiA=:p4/a5ch2nySBCtjm7MMaI3uq1V6+ltWY9qsxUQt7oBw=';
ALTER ROLE sandbox_platform_api PASSWORD 'SCRAM-SHA-256$4096:8mK/i4XP001QihCP6GNQ0A==$RPtDi12VTk4l4lOO8VXJeXJ8ACL9TdmfZUcRzlWWYfs=:KarDjEVhBdmTxiCL0b6MG3tHnlJSA3km4TZzIx86TkQ=';
ALTER ROLE sandbox_platform_operator PASSWORD 'SCRAM-SHA-256$4096:TggplIbGVhdpCowR6ehN2Q==$gSZ/ZA0FAISd1ZBioF/x5wA6bQLbXzMT9qHAWZDhBrs=:3nD1XhYE+AoQwnG9Gt0+jPI1KwQzQbdci6vrCj1kyv0=';
ALTER ROLE sandbox_platform_readonly PASSWORD 'SCRAM-SHA-256$4096:puKOQIgZNYhDAF76fTM3dg==$GxmhxG2CEE9pUY73uuYMY4zmivnHwHn9tpjDehnsalg=:N8T1s+wrXspWL86Hi2S+uG0CHWKiiKNL6hyfuMEKyNc=';
