"""vidstrata: text-to-video search. The CLI and the local process supervisor live here."""
