"""Files the toolkit reads and writes: paths, the atomic artifact store and its manifest, and the checks every file from elsewhere passes before a runtime sees it."""
