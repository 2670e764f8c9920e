// tests/link/tu_b.cpp -- translation unit b of the two-translation-unit link test (see uses.inc).
#define VITIQ_TU(name) tu_b_##name
#include "uses.inc"
