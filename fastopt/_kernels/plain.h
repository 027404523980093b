/* The benchmark's practical limit: each rule as a plain C OpenMP loop (plain_rules.h), compiled
   into the kernels module with its flags and storage types, so that `fastopt bench` can set
   fastopt's step beside the loop a user would write by hand. Not used by any optimizer. */
#ifndef FASTOPT_PLAIN_H
#define FASTOPT_PLAIN_H
#include <math.h>
#include <stddef.h>
#include <string.h>

/* The one loop every plain rule is: a `parallel for` over the elements, statically split. */
#define EACH_ELEMENT(i) \
    _Pragma("omp parallel for schedule(static) num_threads(threads)") \
    for (ptrdiff_t i = 0; i < n; i++)

#define T float
#define ROOT sqrtf
#define ABS fabsf
#define PLAIN(name) plain_##name##_f
#include "plain_rules.h"
#undef T
#undef ROOT
#undef ABS
#undef PLAIN

#define T double
#define ROOT sqrt
#define ABS fabs
#define PLAIN(name) plain_##name##_d
#include "plain_rules.h"
#undef T
#undef ROOT
#undef ABS
#undef PLAIN

typedef void (*plain_loop_f)(float**, ptrdiff_t, const double*, int);
typedef void (*plain_loop_d)(double**, ptrdiff_t, const double*, int);

/* name, arrays (parameter, gradient, states), scalars, the float and the double loop */
typedef struct {
    const char* name;
    int arrays;
    int scalars;
    plain_loop_f single;
    plain_loop_d twice;
} plain_entry;

static const plain_entry plain_loops[] = {
    {"sgd", 3, 2, plain_sgd_f, plain_sgd_d},
    {"adagrad", 3, 2, plain_adagrad_f, plain_adagrad_d},
    {"rmsprop", 3, 3, plain_rmsprop_f, plain_rmsprop_d},
    {"adam", 4, 6, plain_adam_f, plain_adam_d},
    {"adadelta", 4, 3, plain_adadelta_f, plain_adadelta_d},
    {"adamax", 4, 4, plain_adamax_f, plain_adamax_d},
    {"nadam", 4, 6, plain_nadam_f, plain_nadam_d},
    {"lion", 3, 3, plain_lion_f, plain_lion_d},
};

static const size_t plain_count = sizeof plain_loops / sizeof plain_loops[0];

/* The entry named `name`, or NULL. */
static const plain_entry* plain_find(const char* name) {
    size_t k;
    for (k = 0; k < plain_count; k++)
        if (strcmp(plain_loops[k].name, name) == 0)
            return &plain_loops[k];
    return NULL;
}
#endif
