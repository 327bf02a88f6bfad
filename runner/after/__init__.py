"""What a user does with recipes and finished runs: merge, chat, diff, new."""
