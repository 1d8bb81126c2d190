"""Figures of the study: each module has a function that draws from data and a thin `main()` that finds the files."""
