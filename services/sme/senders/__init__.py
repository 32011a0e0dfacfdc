"""Channel senders: separate processes that consume `sme.commands.<channel>`, hand each command
to a channel adapter (`deliver(command) -> Attempt`), retry what may succeed later, and publish
every final outcome back to `sme.events` as a feedback event carrying the command id."""
