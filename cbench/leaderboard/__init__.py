"""The leaderboard: a results store, submissions from outside, a static site."""
