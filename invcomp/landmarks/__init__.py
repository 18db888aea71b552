"""Where the faces are: the face detectors (dlib, MediaPipe) and their five landmarks, the face template and the
similarity fits and placements that align a face to it (no codec, no network of invcomp)."""
