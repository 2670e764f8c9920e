// tests/link/tu_a.cpp -- translation unit a of the two-translation-unit link test (see uses.inc).
#define VITIQ_TU(name) tu_a_##name
#include "uses.inc"
