"""Faces in real photos: detect them, align each to the generator's framing, and put each decoded face back.

:mod:`~invcomp.landmarks.detect` finds faces and landmarks (dlib), :mod:`~invcomp.landmarks.align` maps them to the
training data's landmark template and back (pure), :mod:`~invcomp.formats.photo` is the photo file (pure),
:mod:`~invcomp.faces.background` codes the rest of the frame, and :mod:`~invcomp.faces.photo` puts them together
around any face codec.
"""
