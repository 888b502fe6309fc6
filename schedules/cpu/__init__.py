"""CPU schedules."""
